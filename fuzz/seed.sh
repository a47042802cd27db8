#!/usr/bin/env bash
# Writes a seed corpus for both fuzz targets from the golden vectors
# (crates/nodegrid/tests/data/grid-v1.json) plus the PROTOCOL.md Appendix A examples.
# Seeds go to fuzz/corpus/<target>/ (not committed; regenerate with this script).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
vectors="$here/../crates/nodegrid/tests/data/grid-v1.json"
for target in decode_message split_merged; do
  mkdir -p "$here/corpus/$target"
done
python3 - "$vectors" "$here/corpus" <<'PY'
import json, sys, os
vectors, out = sys.argv[1], sys.argv[2]
d = json.load(open(vectors))
seeds = {}
for v in d["vectors"]:
    seeds["v_" + v["name"]] = v["ws_payload_hex"]
    if "payload_hex" in v.get("fields", {}):
        seeds["p_" + v["name"]] = v["fields"]["payload_hex"]
for t in d["transcript"]:
    seeds["t_%02d" % t["index"]] = t["ws_payload_hex"]
# PROTOCOL.md Appendix A, including the negative ones.
seeds.update({
    "a_request_hello": "970100cdea604e0e03c40568656c6c6f81f402a0",
    "a_request_subroute": "970200cdea60090e23c400090068a20278845970f171889948ea7b834d159665fefae4dc509b0f598672ce3380930d",
    "a_conn_ping": "970000cd2710000300c41281a174c70c05000000006553f10000000005",
    "a_merged_two": "97000200001100c400c410970300cdea604e0e03c40161ea40d2f2c410970400cdea604e0e03c4016246d960f4",
    "a_large_ints": "97cf0000010000000000ce0001117000000910c400",
    "a_neg_nil_payload": "970100cdea604e0e03c0",
    "a_neg_array6": "960100cdea604e0e",
})
n = 0
for name, h in sorted(seeds.items()):
    data = bytes.fromhex(h)
    for target in ("decode_message", "split_merged"):
        with open(os.path.join(out, target, name), "wb") as f:
            f.write(data)
    n += 1
print(f"wrote {n} seeds per target to {out}")
PY
