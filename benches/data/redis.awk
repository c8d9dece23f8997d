# benches/macro.sh, data set redis: the commands that fill (day=1) or change (day=2) a Redis
# store, in RESP for `redis-cli --pipe`. The same keys and values for the same keys=N (fixed
# seeds). Keys by i % 10:
#   0-3  sess:<hex>         a JSON session string (~190 bytes)
#   4-6  user:<i>           a hash of 8 profile fields (~170 bytes)
#   7-8  cache:product:<i>  a JSON product record (~250-400 bytes)
#   9    rate:api:<i>       an integer counter
# day=2 changes ~1 % of the keys, picked at random: sessions and products get new values of the
# same kind, users a new last_login and score (HSET), counters an INCRBY.
#   mawk -v keys=N -v day=1|2 -f redis.awk | redis-cli --pipe
BEGIN {
  split("ada alan barbara claude dennis donald edsger frances grace ivan john ken leslie " \
        "linus margaret niklaus radia robin tony whitfield", first, " ")
  split("lovelace turing liskov shannon ritchie knuth dijkstra allen hopper sutherland " \
        "mccarthy thompson lamport torvalds hamilton wirth perlman milner hoare diffie", last, " ")
  split("red blue green black white silver graphite ocean sand forest", color, " ")
  split("compact sturdy lightweight wireless ergonomic durable premium classic modular " \
        "portable quiet fast smart refurbished recycled waterproof", adj, " ")
  split("keyboard mouse monitor headset charger cable backpack lamp chair desk speaker " \
        "camera tripod router drive adapter", noun, " ")
  split("DE FR NL SE PL ES IT US GB JP BR IN", country, " ")
  split("free free free pro pro team enterprise", plan, " ")
  split("Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0|Mozilla/5.0 (Windows NT 10.0) Chrome/120.0|" \
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2) Safari/604.1|okhttp/4.12.0", ua, "|")
  if (day == 2) {
    srand(20240302)
    for (i = 0; i < keys; i++) {
      if (rand() >= 0.01) continue
      t = i % 10
      if (t <= 3) cmd3("SET", skey(i), session(i))
      else if (t <= 6) {
        a[1] = "HSET"; a[2] = "user:" i; a[3] = "last_login"; a[4] = date(2)
        a[5] = "score"; a[6] = int(rand() * 100000); emit(6)
      } else if (t <= 8) cmd3("SET", "cache:product:" i, product(i))
      else cmd3("INCRBY", "rate:api:" i, 1 + int(rand() * 500))
    }
    exit
  }
  srand(20240301)
  for (i = 0; i < keys; i++) {
    t = i % 10
    if (t <= 3) cmd3("SET", skey(i), session(i))
    else if (t <= 6) user(i)
    else if (t <= 8) cmd3("SET", "cache:product:" i, product(i))
    else cmd3("SET", "rate:api:" i, int(rand() * 100000))
  }
}
function pick(arr, n) { return arr[1 + int(rand() * n)] }
function hex32() { return sprintf("%08x", int(rand() * 4294967296)) }
function date(d) {
  return sprintf("2024-03-%02dT%02d:%02d:%02dZ", d, int(rand() * 24), int(rand() * 60), int(rand() * 60))
}
function skey(i) { return sprintf("sess:%08x%06x", (i * 2654435761) % 4294967296, i) }
function session(i) {
  return sprintf("{\"uid\":%d,\"ip\":\"10.%d.%d.%d\",\"ua\":\"%s\",\"csrf\":\"%s%s%s%s\",\"created\":\"%s\",\"ttl\":%d,\"roles\":[\"user\"%s]}",
    int(rand() * 1000000), int(rand() * 256), int(rand() * 256), int(rand() * 256), pick(ua, 4),
    hex32(), hex32(), hex32(), hex32(), date(1), 3600 * (1 + int(rand() * 24)),
    (rand() < 0.1 ? ",\"admin\"" : ""))
}
function user(i,    f, l) {
  f = pick(first, 20); l = pick(last, 20)
  a[1] = "HSET"; a[2] = "user:" i
  a[3] = "name"; a[4] = f " " l
  a[5] = "email"; a[6] = f "." l int(rand() * 1000) "@example.com"
  a[7] = "plan"; a[8] = pick(plan, 7)
  a[9] = "created"; a[10] = sprintf("20%02d-%02d-%02d", 15 + int(rand() * 9), 1 + int(rand() * 12), 1 + int(rand() * 28))
  a[11] = "last_login"; a[12] = date(1)
  a[13] = "country"; a[14] = pick(country, 12)
  a[15] = "score"; a[16] = int(rand() * 100000)
  a[17] = "newsletter"; a[18] = (rand() < 0.4 ? "yes" : "no")
  emit(18)
}
function product(i,    n, d, k) {
  n = 2 + int(rand() * 8); d = ""
  for (k = 0; k < n; k++) d = d (k ? " " : "") pick(adj, 16) " " pick(noun, 16)
  return sprintf("{\"id\":%d,\"sku\":\"SKU-%06d\",\"name\":\"%s %s %s\",\"description\":\"%s\",\"price\":%.2f,\"currency\":\"EUR\",\"stock\":%d,\"color\":\"%s\",\"rating\":%.1f,\"updated\":\"%s\"}",
    i, int(rand() * 1000000), pick(adj, 16), pick(color, 10), pick(noun, 16), d, rand() * 500,
    int(rand() * 1000), pick(color, 10), 1 + rand() * 4, date(1))
}
function cmd3(c, k, v) { a[1] = c; a[2] = k; a[3] = v; emit(3) }
function emit(n,    j) {
  printf "*%d\r\n", n
  for (j = 1; j <= n; j++) printf "$%d\r\n%s\r\n", length(a[j]), a[j]
}
