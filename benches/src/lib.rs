//! Deterministic dump-like test data for cairn's benchmarks.
//!
//! The criterion benches (`benches/stages.rs`), the `gen-dump` binary and `benches/compare.sh`
//! all take their input from [`DumpGenerator`], so the numbers they print are about the same
//! bytes. The output looks like a PostgreSQL plain-text dump: a schema header, then sections of
//! `COPY ... FROM stdin` rows (tab-separated, with JSON columns) and `INSERT INTO` statements,
//! with ids, names, e-mail addresses, timestamps, amounts and UUIDs; rows average about 210 bytes,
//! and zstd -3 shrinks the stream about fivefold (the UUIDs and amounts are what does not shrink).
//!
//! Two properties make it useful for deduplication benchmarks:
//!
//! - **Prefix-stable.** Every row is generated from its own seed (the stream seed mixed with the
//!   row number), so the first N bytes of a longer dump are exactly a shorter dump.
//! - **A "day 2" variant.** [`Variant::Day2`] is the same stream with about
//!   [`DAY2_CHANGE_PER_MILLE`] ‰ of the rows edited *in place*: some of their numbers get new
//!   digits of the same length. The changed rows are scattered uniformly, like the updates
//!   between two nightly dumps of a busy table, and the stream keeps its length, so every byte
//!   offset outside the edited digits is unchanged.
//!
//! ```
//! use cairn_benches::{DEFAULT_SEED, Variant, generate_dump};
//!
//! let day1 = generate_dump(1 << 20, DEFAULT_SEED, Variant::Day1);
//! let day2 = generate_dump(1 << 20, DEFAULT_SEED, Variant::Day2);
//! assert_eq!(day1.len(), 1 << 20);
//! assert_eq!(day2.len(), day1.len());
//! assert_ne!(day1, day2);
//! // Prefix-stable: a shorter dump is a prefix of a longer one.
//! assert_eq!(generate_dump(1000, DEFAULT_SEED, Variant::Day1), day1[..1000]);
//! ```

use std::io::{self, Write};

use repo_format::ChunkerParams;
use repo_format::format::{
    CHUNK_AVG_MAX, CHUNK_AVG_MIN, CHUNK_MAX_MAX, CHUNK_MAX_MIN, CHUNK_MIN_MAX, CHUNK_MIN_MIN,
};

/// The seed used by the benches, `gen-dump` and `compare.sh` unless told otherwise.
pub const DEFAULT_SEED: u64 = 0x00ca_1e5e_ed00_2026;

/// How many rows in a thousand [`Variant::Day2`] edits (0.5 %).
pub const DAY2_CHANGE_PER_MILLE: u64 = 5;

/// Chunker parameters for an average of `kib` KiB: min S/4, avg S, max 4·S, each clamped to
/// the SPEC §6 bounds (`chunk-curve` and `delta-curve`).
#[must_use]
pub fn stream_params(kib: u32) -> ChunkerParams {
    let avg = (u64::from(kib) << 10).clamp(u64::from(CHUNK_AVG_MIN), u64::from(CHUNK_AVG_MAX));
    let avg = avg as u32;
    let min = (avg / 4).clamp(CHUNK_MIN_MIN, CHUNK_MIN_MAX);
    let max = u32::try_from(u64::from(avg) * 4)
        .unwrap_or(u32::MAX)
        .clamp(CHUNK_MAX_MIN, CHUNK_MAX_MAX);
    ChunkerParams { min, avg, max }
}

/// Which day's dump to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The base stream.
    Day1,
    /// The base stream with about [`DAY2_CHANGE_PER_MILLE`] ‰ of its rows' numbers edited in place.
    Day2,
}

/// Returns exactly `len` bytes of dump (the last line is cut where the length runs out).
#[must_use]
pub fn generate_dump(len: usize, seed: u64, variant: Variant) -> Vec<u8> {
    let mut generator = DumpGenerator::new(seed, variant);
    let mut out = Vec::with_capacity(len + 64 * 1024);
    while out.len() < len {
        generator.next_piece(&mut out);
    }
    out.truncate(len);
    out
}

/// Writes exactly `len` bytes of dump to `w`, in blocks of about 1 MiB.
///
/// # Errors
/// Any error from `w`.
pub fn write_dump<W: Write>(w: &mut W, len: u64, seed: u64, variant: Variant) -> io::Result<()> {
    const BLOCK: usize = 1 << 20;
    let mut generator = DumpGenerator::new(seed, variant);
    let mut buf = Vec::with_capacity(BLOCK + 64 * 1024);
    let mut remaining = len;
    while remaining > 0 {
        buf.clear();
        while buf.len() < BLOCK {
            generator.next_piece(&mut buf);
        }
        let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        w.write_all(&buf[..n])?;
        remaining -= n as u64;
    }
    w.flush()
}

/// An endless dump, produced a piece (a row, or a section header) at a time.
#[derive(Clone, Debug)]
pub struct DumpGenerator {
    seed: u64,
    variant: Variant,
    state: State,
    /// Number of the current data section (one table partition each).
    section: u64,
    /// Rows in the current section, and rows already written.
    section_rows: u64,
    row_in_section: u64,
    /// Global row number: the row's id and the input of its seed.
    row: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    SectionStart,
    Rows,
    SectionEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Customers,
    Orders,
    Events,
}

const TABLES: [Table; 3] = [Table::Customers, Table::Orders, Table::Events];

const HEADER: &str = "--
-- PostgreSQL database dump
--

-- Dumped from database version 15.8 (Debian 15.8-0+deb12u1)
-- Dumped by pg_dump version 15.8 (Debian 15.8-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';
SET default_table_access_method = heap;

--
-- Name: customers; Type: TABLE; Schema: public; Owner: app
--

CREATE TABLE public.customers (
    id bigint NOT NULL,
    first_name text NOT NULL,
    last_name text NOT NULL,
    email text NOT NULL,
    city text,
    balance numeric(12,2) DEFAULT 0 NOT NULL,
    created_at timestamp with time zone NOT NULL,
    attrs jsonb
);

--
-- Name: orders; Type: TABLE; Schema: public; Owner: app
--

CREATE TABLE public.orders (
    id bigint NOT NULL,
    customer_id bigint NOT NULL,
    status text NOT NULL,
    total numeric(12,2) NOT NULL,
    currency character(3) NOT NULL,
    placed_at timestamp with time zone NOT NULL,
    items jsonb NOT NULL
);

--
-- Name: events; Type: TABLE; Schema: public; Owner: app
--

CREATE TABLE public.events (
    id bigint NOT NULL,
    at timestamp with time zone NOT NULL,
    kind text NOT NULL,
    user_id bigint,
    ip inet,
    request_id uuid NOT NULL,
    payload jsonb
);
";

#[rustfmt::skip]
const FIRST_NAMES: [&str; 40] = [
    "Ada", "Alan", "Amara", "Anders", "Aiko", "Bea", "Bruno", "Carmen", "Chen", "Dario", "Elena",
    "Emeka", "Farah", "Felix", "Greta", "Hana", "Hugo", "Ines", "Ivan", "Jonas", "Kai", "Lena",
    "Luca", "Maya", "Mateo", "Nadia", "Noah", "Olga", "Omar", "Priya", "Rafael", "Rosa", "Sara",
    "Tariq", "Tomas", "Uma", "Vera", "Wei", "Yusuf", "Zoe",
];
#[rustfmt::skip]
const LAST_NAMES: [&str; 40] = [
    "Abbott", "Andersen", "Banerjee", "Becker", "Costa", "Dubois", "Eriksson", "Fischer", "Garcia",
    "Haddad", "Ivanova", "Jansen", "Kowalski", "Kim", "Lambert", "Li", "Moreau", "Mueller",
    "Nakamura", "Novak", "Okafor", "Olsen", "Petrov", "Quinn", "Rossi", "Santos", "Schmidt",
    "Silva", "Tanaka", "Thompson", "Uddin", "Varga", "Weber", "Wong", "Xu", "Yamada", "Yilmaz",
    "Zhang", "Zimmermann", "Nguyen",
];
#[rustfmt::skip]
const CITIES: [&str; 24] = [
    "Amsterdam", "Berlin", "Bogota", "Cairo", "Chicago", "Dublin", "Hamburg", "Helsinki",
    "Istanbul", "Jakarta", "Lagos", "Lima", "Lisbon", "London", "Madrid", "Montreal", "Mumbai",
    "Osaka", "Paris", "Prague", "Seoul", "Sydney", "Toronto", "Vienna",
];
#[rustfmt::skip]
const DOMAINS: [&str; 8] = [
    "example.com", "mail.example.org", "corp.example.net", "inbox.example", "post.example.de",
    "example.co.uk", "users.example.io", "example.fr",
];
const PLANS: [&str; 4] = ["free", "starter", "pro", "enterprise"];
const STATUSES: [&str; 5] = ["pending", "paid", "shipped", "delivered", "refunded"];
const CURRENCIES: [&str; 4] = ["EUR", "USD", "GBP", "JPY"];
#[rustfmt::skip]
const EVENT_KINDS: [&str; 8] = [
    "login", "logout", "page_view", "search", "add_to_cart", "checkout", "api_call", "error",
];
#[rustfmt::skip]
const PATHS: [&str; 10] = [
    "/", "/login", "/account", "/search", "/cart", "/checkout", "/api/v2/orders",
    "/api/v2/customers", "/products/list", "/help/faq",
];
#[rustfmt::skip]
const AGENTS: [&str; 5] = [
   
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "curl/8.5.0", "python-requests/2.32.3",
];
#[rustfmt::skip]
const TAGS: [&str; 8] = [
    "vip", "beta", "newsletter", "churn-risk", "b2b", "edu", "trial", "legacy",
];
const SKU_PREFIXES: [&str; 6] = ["BK", "EL", "HM", "SP", "TY", "GR"];

/// Seconds since the Unix epoch of 2024-01-01T00:00:00Z; rows' timestamps grow from here.
const EPOCH_2024: i64 = 1_704_067_200;

impl DumpGenerator {
    /// A generator at the start of the dump.
    #[must_use]
    pub fn new(seed: u64, variant: Variant) -> DumpGenerator {
        DumpGenerator {
            seed,
            variant,
            state: State::Header,
            section: 0,
            section_rows: 0,
            row_in_section: 0,
            row: 0,
        }
    }

    /// Appends the next piece of the dump to `out`: the header, a section header, one row or a
    /// section end. Pieces are at most a few KiB.
    pub fn next_piece(&mut self, out: &mut Vec<u8>) {
        match self.state {
            State::Header => {
                out.extend_from_slice(HEADER.as_bytes());
                self.state = State::SectionStart;
            }
            State::SectionStart => {
                // Sections of 2,000 to 30,000 rows: a dump has tables of many sizes.
                self.section_rows = 2_000 + mix(self.seed ^ 0x5ec7, self.section) % 28_000;
                self.row_in_section = 0;
                self.section_header(out);
                self.state = State::Rows;
            }
            State::Rows => {
                self.row_line(out);
                self.row += 1;
                self.row_in_section += 1;
                if self.row_in_section == self.section_rows {
                    self.state = State::SectionEnd;
                }
            }
            State::SectionEnd => {
                match self.table() {
                    Table::Customers | Table::Events => out.extend_from_slice(b"\\.\n\n"),
                    Table::Orders => out.extend_from_slice(b"\n"),
                }
                self.section += 1;
                self.state = State::SectionStart;
            }
        }
    }

    fn table(&self) -> Table {
        TABLES[(self.section % 3) as usize]
    }

    fn section_header(&self, out: &mut Vec<u8>) {
        let part = self.section / 3;
        let (name, copy_columns) = match self.table() {
            Table::Customers => (
                "customers",
                Some("id, first_name, last_name, email, city, balance, created_at, attrs"),
            ),
            Table::Orders => ("orders", None),
            Table::Events => (
                "events",
                Some("id, at, kind, user_id, ip, request_id, payload"),
            ),
        };
        out.extend_from_slice(b"--\n-- Data for Name: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'_');
        push_u64_width(out, part, 4);
        out.extend_from_slice(b"; Type: TABLE DATA; Schema: public; Owner: app\n--\n\n");
        if let Some(columns) = copy_columns {
            out.extend_from_slice(b"COPY public.");
            out.extend_from_slice(name.as_bytes());
            out.push(b'_');
            push_u64_width(out, part, 4);
            out.extend_from_slice(b" (");
            out.extend_from_slice(columns.as_bytes());
            out.extend_from_slice(b") FROM stdin;\n");
        }
    }

    fn row_line(&self, out: &mut Vec<u8>) {
        let id = self.row + 1;
        let mut rng = Rng::new(mix(self.seed, self.row));
        // Day 2 edits a row's numbers in place when the row is picked; the edit draws its new
        // digits from a second generator, so the row's other fields stay as on day 1.
        let mut edit = (self.variant == Variant::Day2
            && mix(self.seed ^ 0xda42, self.row) % 1000 < DAY2_CHANGE_PER_MILLE)
            .then(|| Rng::new(mix(self.seed ^ 0xed17, self.row)));
        // Timestamps grow with the row number (about 20 s a row) with some jitter.
        let ts = EPOCH_2024 + (self.row as i64) * 20 + rng.below(600) as i64;
        match self.table() {
            Table::Customers => {
                let first = pick(&mut rng, &FIRST_NAMES);
                let last = pick(&mut rng, &LAST_NAMES);
                push_u64(out, id);
                out.push(b'\t');
                out.extend_from_slice(first.as_bytes());
                out.push(b'\t');
                out.extend_from_slice(last.as_bytes());
                out.push(b'\t');
                push_lower(out, first);
                out.push(b'.');
                push_lower(out, last);
                push_u64(out, rng.below(1000));
                out.push(b'@');
                out.extend_from_slice(pick(&mut rng, &DOMAINS).as_bytes());
                out.push(b'\t');
                out.extend_from_slice(pick(&mut rng, &CITIES).as_bytes());
                out.push(b'\t');
                let balance = rng.below(5_000_000);
                push_edited(out, &mut edit, |o| push_cents(o, balance));
                out.push(b'\t');
                push_timestamp(out, ts);
                out.extend_from_slice(b"\t{\"plan\": \"");
                out.extend_from_slice(pick(&mut rng, &PLANS).as_bytes());
                out.extend_from_slice(b"\", \"seats\": ");
                let seats = 1 + rng.below(250);
                push_edited(out, &mut edit, |o| push_u64(o, seats));
                out.extend_from_slice(b", \"tags\": [");
                let ntags = rng.below(3);
                for i in 0..ntags {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.push(b'"');
                    out.extend_from_slice(pick(&mut rng, &TAGS).as_bytes());
                    out.push(b'"');
                }
                out.extend_from_slice(b"], \"score\": 0.");
                let score = rng.below(1000);
                push_edited(out, &mut edit, |o| push_u64_width(o, score, 3));
                out.extend_from_slice(b"}\n");
            }
            Table::Orders => {
                out.extend_from_slice(b"INSERT INTO public.orders_");
                push_u64_width(out, self.section / 3, 4);
                out.extend_from_slice(
                    b" (id, customer_id, status, total, currency, placed_at, items) VALUES (",
                );
                push_u64(out, id);
                out.extend_from_slice(b", ");
                push_u64(out, 1 + rng.below(id));
                out.extend_from_slice(b", '");
                out.extend_from_slice(pick(&mut rng, &STATUSES).as_bytes());
                out.extend_from_slice(b"', ");
                let total = 100 + rng.below(200_000);
                push_edited(out, &mut edit, |o| push_cents(o, total));
                out.extend_from_slice(b", '");
                out.extend_from_slice(pick(&mut rng, &CURRENCIES).as_bytes());
                out.extend_from_slice(b"', '");
                push_timestamp(out, ts);
                out.extend_from_slice(b"', '[");
                let nitems = 1 + rng.below(3);
                for i in 0..nitems {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.extend_from_slice(b"{\"sku\": \"");
                    out.extend_from_slice(pick(&mut rng, &SKU_PREFIXES).as_bytes());
                    out.push(b'-');
                    push_u64_width(out, rng.below(100_000), 5);
                    out.extend_from_slice(b"\", \"qty\": ");
                    let qty = 1 + rng.below(9);
                    push_edited(out, &mut edit, |o| push_u64(o, qty));
                    out.extend_from_slice(b", \"price\": ");
                    push_cents(out, 99 + rng.below(20_000));
                    out.push(b'}');
                }
                out.extend_from_slice(b"]');\n");
            }
            Table::Events => {
                push_u64(out, id);
                out.push(b'\t');
                push_timestamp(out, ts);
                out.push(b'\t');
                out.extend_from_slice(pick(&mut rng, &EVENT_KINDS).as_bytes());
                out.push(b'\t');
                if rng.below(10) == 0 {
                    out.extend_from_slice(b"\\N");
                } else {
                    push_u64(out, 1 + rng.below(200_000));
                }
                out.push(b'\t');
                let ip = rng.next();
                for (i, shift) in [24, 16, 8, 0].into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    push_u64(out, (ip >> shift) & 0xff);
                }
                out.push(b'\t');
                push_uuid(out, rng.next(), rng.next());
                out.extend_from_slice(b"\t{\"path\": \"");
                out.extend_from_slice(pick(&mut rng, &PATHS).as_bytes());
                out.extend_from_slice(b"\", \"status\": ");
                out.extend_from_slice(if rng.below(20) == 0 { b"500" } else { b"200" });
                out.extend_from_slice(b", \"ms\": ");
                let ms = 1 + rng.below(3000);
                push_edited(out, &mut edit, |o| push_u64(o, ms));
                out.extend_from_slice(b", \"ua\": \"");
                out.extend_from_slice(pick(&mut rng, &AGENTS).as_bytes());
                out.extend_from_slice(b"\"}\n");
            }
        }
    }
}

/// Writes a number with `write`; when the row is being edited, replaces its digits in place
/// with new ones (same count, no new leading zero), so the line keeps its length.
fn push_edited(out: &mut Vec<u8>, edit: &mut Option<Rng>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    write(out);
    if let Some(rng) = edit {
        let mut first = true;
        for b in &mut out[start..] {
            if b.is_ascii_digit() {
                let keep_nonzero = first && *b != b'0';
                let mut d = rng.below(10) as u8;
                if keep_nonzero && d == 0 {
                    d = 1 + rng.below(9) as u8;
                }
                *b = b'0' + d;
                first = false;
            }
        }
    }
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

fn push_lower(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().map(|b| b.to_ascii_lowercase()));
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    push_u64_width(out, n, 1);
}

/// Decimal, zero-padded to at least `width` digits.
fn push_u64_width(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in (digits.len() - i)..width {
        out.push(b'0');
    }
    out.extend_from_slice(&digits[i..]);
}

/// An amount in cents as `units.cc`.
fn push_cents(out: &mut Vec<u8>, cents: u64) {
    push_u64(out, cents / 100);
    out.push(b'.');
    push_u64_width(out, cents % 100, 2);
}

/// `YYYY-MM-DD HH:MM:SS+00`, as pg_dump writes a `timestamptz` in UTC.
fn push_timestamp(out: &mut Vec<u8>, unix: i64) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    push_u64_width(out, y as u64, 4);
    out.push(b'-');
    push_u64_width(out, m, 2);
    out.push(b'-');
    push_u64_width(out, d, 2);
    out.push(b' ');
    push_u64_width(out, secs / 3600, 2);
    out.push(b':');
    push_u64_width(out, secs / 60 % 60, 2);
    out.push(b':');
    push_u64_width(out, secs % 60, 2);
    out.extend_from_slice(b"+00");
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn push_uuid(out: &mut Vec<u8>, hi: u64, lo: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = (u128::from(hi) << 64 | u128::from(lo)).to_be_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// SplitMix64's finaliser over `seed + n`: independent-looking seeds for rows and sections.
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// wyrand: small, fast and good enough for test data (not for anything secret).
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    }

    /// Uniform enough in `0..n` for n far below 2^64 (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_length_and_deterministic() {
        let a = generate_dump(3 << 20, DEFAULT_SEED, Variant::Day1);
        let b = generate_dump(3 << 20, DEFAULT_SEED, Variant::Day1);
        assert_eq!(a.len(), 3 << 20);
        assert_eq!(a, b);
        assert_ne!(a, generate_dump(3 << 20, DEFAULT_SEED + 1, Variant::Day1));
    }

    #[test]
    fn shorter_dump_is_a_prefix() {
        let long = generate_dump(2 << 20, 7, Variant::Day2);
        for len in [0, 1, 1000, 123_457, 1 << 20] {
            assert_eq!(generate_dump(len, 7, Variant::Day2), long[..len]);
        }
    }

    #[test]
    fn write_dump_matches_generate_dump() {
        let len = (2 << 20) + 12_345;
        let mut written = Vec::new();
        write_dump(&mut written, len as u64, 9, Variant::Day1).expect("writing to a Vec");
        assert_eq!(written, generate_dump(len, 9, Variant::Day1));
    }

    #[test]
    fn day2_edits_about_half_a_percent_of_rows_in_place() {
        let len = 8 << 20;
        let day1 = generate_dump(len, DEFAULT_SEED, Variant::Day1);
        let day2 = generate_dump(len, DEFAULT_SEED, Variant::Day2);
        assert_eq!(day1.len(), day2.len());
        let mut lines = 0usize;
        let mut changed = 0usize;
        for (a, b) in day1.split(|&c| c == b'\n').zip(day2.split(|&c| c == b'\n')) {
            assert_eq!(a.len(), b.len(), "edits keep each line's length");
            lines += 1;
            if a != b {
                changed += 1;
                // Only digits change.
                for (x, y) in a.iter().zip(b) {
                    assert!(x == y || (x.is_ascii_digit() && y.is_ascii_digit()));
                }
            }
        }
        let per_mille = changed as f64 * 1000.0 / lines as f64;
        assert!(
            (3.0..7.0).contains(&per_mille),
            "{changed} of {lines} lines changed"
        );
    }

    #[test]
    fn looks_like_a_dump() {
        let d = generate_dump(24 << 20, DEFAULT_SEED, Variant::Day1);
        let text = std::str::from_utf8(&d).expect("ASCII");
        assert!(text.starts_with("--\n-- PostgreSQL database dump"));
        for needle in [
            "COPY public.customers_0000",
            "INSERT INTO public.orders_0000",
            "COPY public.events_0000",
            "\\.\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?}");
        }
    }

    #[test]
    fn timestamps() {
        let mut out = Vec::new();
        push_timestamp(&mut out, EPOCH_2024 + 59 * 86_400 + 3_661);
        assert_eq!(out, b"2024-02-29 01:01:01+00");
    }
}
