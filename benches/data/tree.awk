# benches/macro.sh, data set tree: the small files of a directory tree (text, logs, JSON, CSV of
# 1 to 16 KiB, log-uniform, ~5.4 KiB on average), the same bytes for the same files=N (fixed
# seeds). File i is <root>/p<i%16>/m<i/16%16>/s<i/256%8>/<kind>-<i>.<ext>.
#   mawk -v root=DIR -v files=N -v day=0 -f tree.awk
#       prints the directories of day 1's and day 2's files, for mkdir -p
#   mawk -v root=DIR -v files=N -v day=1 -f tree.awk
#       writes the N files (their directories must exist)
#   mawk -v root=DAY2 -v files=N -v day=2 -f tree.awk
#       in a copy of day 1: picks ~1 % of the files and writes each one's new content to
#       PATH.new (logs and NDJSON get lines appended, text and CSV a line replaced and one
#       inserted), printing PATH.new (the caller renames it over PATH, so a hard-linked copy
#       keeps day 1 intact); then adds N/200 new files (N..N+N/200-1), printing their paths
BEGIN {
  split("the of and to in is that for it as with was on be by at this from or an are not " \
        "have which one you all were when there can more if will each about how up out them " \
        "then she many some so these would other into has her two like him see time could no " \
        "make than first been its who now people my made over did down only way find use may " \
        "water long little very after words called just where most know get through back much " \
        "before go good new write our used me man too any day same right look think also around " \
        "another came come work three must because does part even place well such here take why " \
        "help put different away again off went old number great tell men say small every found " \
        "still between name should home big give air line set own under read last never us left " \
        "end along while might next sound below saw something thought both few those always show " \
        "large often together asked house world going want school important until form food keep " \
        "children feet land side without boy once animal life enough took four head above kind " \
        "began almost live page got earth need far hand high year mother light country father", w, " ")
  nw = 0; for (k in w) nw++
  split("INFO INFO INFO INFO DEBUG DEBUG WARN ERROR", lvl, " ")
  split("api worker scheduler db cache auth billing mailer", comp, " ")
  split("login purchase refund view search signup logout upload", ev, " ")
  if (day == 0) {
    for (i = 0; i < files + int(files / 200); i++) {
      p = path(i); sub(/\/[^\/]*$/, "", p)
      if (!(p in seen)) { seen[p] = 1; print p }
    }
    exit
  }
  if (day == 2) {
    srand(7002)
    for (i = 0; i < files; i++) if (rand() < 0.01) modify(i)
    for (i = files; i < files + int(files / 200); i++) { make(i); print path(i) }
    exit
  }
  srand(7001)
  for (i = 0; i < files; i++) make(i)
}
function kind(i) { return i % 4 }
function path(i,    k) {
  k = kind(i)
  return sprintf("%s/p%02d/m%02d/s%d/%s-%05d.%s", root, i % 16, int(i / 16) % 16, int(i / 256) % 8,
    (k == 0 ? "events" : k == 1 ? "service" : k == 2 ? "notes" : "report"), i,
    (k == 0 ? "json" : k == 1 ? "log" : k == 2 ? "md" : "csv"))
}
function word() { return w[1 + int(rand() * nw)] }
function words(n,    s, k) { s = word(); for (k = 1; k < n; k++) s = s " " word(); return s }
function stamp(d) {
  return sprintf("2024-03-%02dT%02d:%02d:%02d.%03dZ", d, int(rand() * 24), int(rand() * 60),
    int(rand() * 60), int(rand() * 1000))
}
# line(k, n): the n-th line of a file of kind k
function line(k, n) {
  if (k == 0)
    return sprintf("{\"id\":%d,\"ts\":\"%s\",\"user\":\"%s.%s\",\"event\":\"%s\",\"value\":%.2f,\"ok\":%s}",
      int(rand() * 100000000), stamp(day), word(), word(), ev[1 + int(rand() * 8)],
      rand() * 1000, (rand() < 0.9 ? "true" : "false"))
  if (k == 1)
    return sprintf("%s %-5s [%s-%d] %s id=%d took=%dms", stamp(day), lvl[1 + int(rand() * 8)],
      comp[1 + int(rand() * 8)], int(rand() * 8), words(3 + int(rand() * 9)), int(rand() * 1000000),
      int(rand() * 5000))
  if (k == 2)
    return (n == 0 ? "# " words(4) : n % 7 == 0 ? "" : rand() < 0.1 ? "- " words(6) : words(8 + int(rand() * 10)))
  if (n == 0) return "date,region,product,units,price,total"
  return sprintf("2024-03-%02d,%s,%s-%d,%d,%.2f,%.2f", 1 + int(rand() * 28), comp[1 + int(rand() * 8)],
    word(), int(rand() * 100), int(rand() * 50), rand() * 100, rand() * 5000)
}
function make(i,    p, k, size, n, l) {
  p = path(i); k = kind(i); size = int(1024 * 16 ^ rand()); n = 0
  while (size > 0) { l = line(k, n++); if (length(l) >= size) l = substr(l, 1, size - 1); print l > p; size -= length(l) + 1 }
  close(p)
}
function modify(i,    p, k, n, m, at, l, lines) {
  p = path(i); k = kind(i); n = 0
  while ((getline l < p) > 0) lines[n++] = l
  close(p)
  if (k <= 1) { m = 5 + int(rand() * 40); for (at = 0; at < m; at++) lines[n++] = line(k, n) }
  else {
    at = int(rand() * n); lines[at] = line(k, at)
    for (m = n; m > at; m--) lines[m] = lines[m - 1]
    lines[at] = line(k, at + 1); n++
  }
  for (m = 0; m < n; m++) print lines[m] > (p ".new")
  close(p ".new")
  print p ".new"
}
