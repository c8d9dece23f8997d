//! Buckets for the tests that talk to a local S3 server (moto or Garage, see `scripts/test` and
//! `scripts/s3-suite`).

use std::io::{Read, Write};
use std::net::TcpStream;

/// A fresh bucket for one test: `cairn-<test>-<pid>-<nanoseconds>` (unique across runs against
/// the same server, too), created with a plain HTTP `PUT /bucket` (moto accepts any credentials
/// and unsigned requests). On servers that create buckets only through their admin tools
/// (Garage), `CAIRN_S3_BUCKET` names an existing bucket and each test gets a fresh prefix in it
/// instead, which the tests treat as their bucket.
pub fn test_bucket(endpoint: &str, test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let name = format!("cairn-{test}-{}-{nanos}", std::process::id());
    if let Some(shared) = std::env::var("CAIRN_S3_BUCKET")
        .ok()
        .filter(|b| !b.is_empty())
    {
        return format!("{shared}/{name}");
    }
    create_bucket(endpoint, &name);
    name
}

/// Creates `bucket` on the S3 server at `endpoint` (`http://host:port`) with a plain HTTP PUT.
pub fn create_bucket(endpoint: &str, bucket: &str) {
    let hostport = endpoint
        .strip_prefix("http://")
        .expect("CAIRN_S3_ENDPOINT must be http://host:port")
        .trim_end_matches('/');
    let mut s = TcpStream::connect(hostport)
        .unwrap_or_else(|e| panic!("cannot connect to the S3 server at {endpoint}: {e}"));
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send PUT");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read response");
    let status = response.lines().next().unwrap_or_default();
    assert!(
        status.contains(" 200"),
        "creating bucket {bucket} at {endpoint}: {status}"
    );
}
