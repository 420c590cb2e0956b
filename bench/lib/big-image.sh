# make_archive OUT: the benchmark image as an OCI archive, generated once (deterministically,
# python3) and cached: 3 gzip layers, ~150 MB of blobs:
#   layer 0: 12 000 files of 1-16 KiB of text in 120 dirs (a system-like tree, ~100 MB, compressible)
#   layer 1: 20 000 files of 1 KiB (many small files, 20 MB)
#   layer 2: 4 files of 24 MiB of random bytes (incompressible, 96 MiB)
# Shared by bench/load.sh and bench/pull.sh. Needs log() (hack/lib/common.sh).

make_archive() {
  local out=$1
  [[ -s $out ]] && return 0
  log "generating $out (once)"
  mkdir -p "$(dirname "$out")"
  python3 - "$out" <<'PY'
import gzip, hashlib, io, json, os, random, sys, tarfile
out = sys.argv[1]
rnd = random.Random(1)
words = [("".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9)))).encode() for _ in range(5000)]
def add(t, name, data, mode=0o644):
    i = tarfile.TarInfo(name); i.size = len(data); i.mtime = 1700000000; i.mode = mode
    t.addfile(i, io.BytesIO(data))
def adddir(t, name):
    i = tarfile.TarInfo(name); i.type = tarfile.DIRTYPE; i.mtime = 1700000000; i.mode = 0o755
    t.addfile(i)
def layer(fill):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        fill(t)
    return buf.getvalue()
def system(t):
    adddir(t, "usr"); adddir(t, "usr/share")
    for d in range(120):
        adddir(t, f"usr/share/d{d:03}")
        for f in range(100):
            n = rnd.randint(1024, 16384)
            text = b" ".join(rnd.choice(words) for _ in range(n // 5))[:n]
            add(t, f"usr/share/d{d:03}/f{f:03}.txt", text)
def small(t):
    adddir(t, "small")
    for d in range(20):
        adddir(t, f"small/{d:02}")
        for f in range(1000):
            add(t, f"small/{d:02}/{f:04}", rnd.randbytes(1024))
def big(t):
    adddir(t, "big")
    for f in range(4):
        add(t, f"big/blob{f}", rnd.randbytes(24 << 20))
sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
blobs, diff_ids, layers = {}, [], []
for fill in (system, small, big):
    tar = layer(fill)
    gz = gzip.compress(tar, compresslevel=6, mtime=0)
    diff_ids.append(sha(tar)); blobs[sha(gz)] = gz
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(gz), "size": len(gz)})
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
blobs[sha(config)] = config
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
    "layers": layers}).encode()
blobs[sha(manifest)] = manifest
index = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": sha(manifest), "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "localhost/big:latest"}}]}).encode()
with tarfile.open(out + ".tmp", "w") as t:
    add(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    add(t, "index.json", index)
    for d, data in blobs.items():
        add(t, "blobs/sha256/" + d[7:], data)
os.rename(out + ".tmp", out)
print(sum(l["size"] for l in layers), file=sys.stderr)
PY
}

# layers_mb ARCHIVE: the size of an OCI archive's layers (as stored, compressed), in MB.
layers_mb() {
  python3 -c "import json,tarfile,sys;t=tarfile.open(sys.argv[1]);i=json.load(t.extractfile('index.json'));m=json.load(t.extractfile('blobs/sha256/'+i['manifests'][0]['digest'][7:]));print(sum(l['size'] for l in m['layers'])/1e6)" "$1"
}
