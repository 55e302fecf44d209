"""bench --delta: what an upgrade v1 -> v2 downloads, fw against its peers.

Imported by bench/bench. On one tree pair, in one run:

  bytes over the wire, counted by nginx ($bytes_sent: bodies and headers)
    floor         gzip -6 of each v2 file whose content is not in v1 (each
                  distinct content once): what any file-based delta must fetch
    fw full       the whole v2 package (fw-install URL)
    fw delta      fw-install --delta URL on a target holding v1 (fw-fetch),
                  for an encrypted and for a signed-only package
    OSTree pull   ostree pull of v2 into an archive repo holding v1 (new
                  objects), and with a static delta v1 -> v2
    casync        casync extract of v2's index, seeded with the v1 tree
    zchunk        zck_delta_size of tar.zck of each (computed, not fetched)
  wall time of the whole upgrade over a 20 Mbit/s link (a rate-limiting
  proxy in front of nginx shared by all connections, so parallel fetchers
  get no more): fw full, fw delta, OSTree pull + checkout
  peak RSS of the delta stage: fw-fetch and fw-unpack --delta (/usr/bin/time %M)

The peers come from Debian (ostree, casync, zchunk; installed by the bench
as root when missing). Everything runs on 127.0.0.1.
"""

import asyncio
import gzip
import hashlib
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

RATE = 20_000_000 // 8  # 20 Mbit/s, in bytes per second
q = shlex.quote


class Ctx:
    """What bench/bench hands over: logging, dying, the built tools."""

    def __init__(self, log, die, rel, root, work, env):
        self.log, self.die, self.rel, self.root, self.work, self.env = log, die, rel, root, work, env

    def tool(self, name):
        return os.path.join(self.rel, name)

    in_peer = False

    def sh(self, script, what, env=None, capture=False):
        r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], env=env or self.env,
                           stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            msg = f"{what} failed (exit {r.returncode}):\n{r.stderr[-3000:]}"
            if self.in_peer:
                raise PeerFailed(msg)
            self.die(msg)
        return r.stdout if capture else r.stderr

    def peer(self, result, keys, step):
        """Runs a peer's `step`; if it fails, its figures (`keys` of
        `result`) are left out of the table, said why, and the run goes on:
        a peer that cannot run is no reason to lose fw's figures."""
        self.in_peer = True
        try:
            step()
            return True
        except PeerFailed as e:
            self.log(f"delta: left out of the table: {e}")
            for k in keys:
                result.setdefault(k, {"bytes": None, "error": str(e).strip()[-300:]})
            return False
        finally:
            self.in_peer = False


class PeerFailed(Exception):
    pass


def need_peers(ctx):
    need = [pkg for pkg, cmd in [("nginx", "nginx"), ("ostree", "ostree"), ("casync", "casync"),
                                 ("zchunk", "zck_delta_size")] if not shutil.which(cmd)]
    if not need:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        ctx.log(f"installing {' '.join(need)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(["apt-get", "install", "-y", "-qq"] + need, env=env, stdout=sys.stderr).returncode:
            ctx.die(f"apt-get install {' '.join(need)} failed")
    else:
        ctx.die(f"missing: {' '.join(need)}; install them with apt-get")


# ------------------------------------------------------------------ servers


class Nginx:
    """nginx on an ephemeral port (it inherits the socket the bench bound)."""

    def __init__(self, ctx, www):
        self.dir = os.path.join(ctx.work, "nginx")
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self.log_path = os.path.join(self.dir, "access.log")
        d = self.dir
        user = "user root;" if os.geteuid() == 0 else ""
        conf = f"""{user}
daemon off; master_process on; worker_processes 1;
pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  log_format bytes '$request $status $bytes_sent';
  access_log {self.log_path} bytes;
  default_type application/octet-stream;
  sendfile on;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{ listen 127.0.0.1:{self.port}; root {www}; }}
}}
"""
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(conf)
        os.set_inheritable(sock.fileno(), True)
        self.proc = subprocess.Popen(["nginx", "-c", os.path.join(d, "nginx.conf"), "-e", os.path.join(d, "error.log")],
                                     env=dict(os.environ, NGINX=f"{sock.fileno()};"), pass_fds=(sock.fileno(),),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sock.close()
        for _ in range(200):
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{self.port}/"])
            if r.returncode == 0:
                break
            time.sleep(0.05)
        else:
            ctx.die("nginx does not answer: see " + os.path.join(d, "error.log"))

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{path}"

    def take(self):
        """Bytes sent and requests since the last call."""
        try:
            with open(self.log_path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        open(self.log_path, "w").close()
        lines = [l for l in lines if not l.startswith("GET / ")]
        return sum(int(l.split()[-1]) for l in lines), len(lines)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class RateLimit:
    """A TCP proxy whose downloads share one token bucket: a 20 Mbit/s link."""

    def __init__(self, upstream_port, rate=RATE):
        self.upstream, self.rate = upstream_port, rate
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.tokens, self.last = 0.0, time.monotonic()
        self.lock = asyncio.Lock()
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.server = server
        ready.set()
        self.loop.run_forever()

    async def _take(self, n):
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.rate * 0.05, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)

    async def _pipe(self, reader, writer, limited):
        try:
            while True:
                data = await reader.read(16384)
                if not data:
                    break
                if limited:
                    await self._take(len(data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _client(self, creader, cwriter):
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(self._pipe(creader, uwriter, False), self._pipe(ureader, cwriter, True))

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{path}"

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


# ------------------------------------------------------------------ figures


def floor_bytes(v1, v2):
    """gzip -6 (no name, mtime 0) of each distinct content of v2 that v1 lacks."""
    def contents(tree):
        out = {}
        for top, dirs, files in os.walk(tree["path"]):
            rel_top = os.path.relpath(top, tree["path"])
            dirs[:] = [d for d in dirs if not excluded(os.path.join(rel_top, d), tree)]
            for f in files:
                p = os.path.join(top, f)
                if excluded(os.path.join(rel_top, f), tree) or os.path.islink(p) or not os.path.isfile(p):
                    continue
                h = hashlib.sha256()
                with open(p, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                out.setdefault(h.hexdigest(), p)
        return out

    old = contents(v1)
    new = contents(v2)
    total = files = 0
    for digest, p in new.items():
        if digest in old:
            continue
        with open(p, "rb") as fh:
            total += len(gzip.compress(fh.read(), 6, mtime=0))
        files += 1
    return total, files


def excluded(rel, tree):
    import fnmatch
    rel = os.path.normpath(rel)
    return any(fnmatch.fnmatch(rel, g) for g in tree["excludes"])


def timed(ctx, script, env=None):
    t = time.monotonic()
    ctx.sh(script, "a timed step", env=env)
    return time.monotonic() - t


def rss_kib(path, tool):
    """The largest peak RSS of `tool` in a FW_BENCH_TIMES file (KiB)."""
    with open(path) as f:
        return max((int(l.split()[-1]) for l in f if l.startswith(tool + " ")), default=None)


def run(ctx, v1, v2, runs):
    need_peers(ctx)
    w = ctx.work
    www = os.path.join(w, "www")
    os.makedirs(www)
    keys = os.path.join(w, "dkeys")
    ring = os.path.join(keys, "ring")
    os.makedirs(ring)
    sign = q(ctx.tool("fw-sign"))
    ctx.sh(f"""
{sign} -q keygen --userid 'bench vendor' > {keys}/vendor.key
{sign} -q cert < {keys}/vendor.key > {ring}/vendor.asc
{sign} -q keygen --userid 'bench device' > {ring}/device-key.asc
{sign} -q cert < {ring}/device-key.asc > {keys}/device.asc
""", "making keys")
    result = {"runs": runs}

    def pack(tree, out, encrypt):
        ex = " ".join(f"--exclude {q(g)}" for g in tree["excludes"])
        enc = f"--encrypt-for {keys}/device.asc" if encrypt else ""
        ctx.sh(f"{sign} -q pack --key {keys}/vendor.key {enc} {ex} {q(tree['path'])} > {q(out)}", f"packing {out}")

    ctx.log("delta: packing v1 and v2 (encrypted and signed-only)")
    for name, tree in [("v1", v1), ("v2", v2)]:
        pack(tree, f"{www}/{name}.fw", True)
        pack(tree, f"{www}/{name}-plain.fw", False)
    result["package_bytes"] = {n: os.path.getsize(f"{www}/{n}.fw") for n in ["v1", "v2", "v1-plain", "v2-plain"]}

    ctx.log("delta: the floor (gzip -6 of each new v2 content)")
    floor, floor_files = floor_bytes(v1, v2)
    result["floor"] = {"bytes": floor, "files": floor_files}

    nginx = Nginx(ctx, www)
    proxy = RateLimit(nginx.port)
    install = q(os.path.join(ctx.root, "scripts", "fw-install"))
    wbin = os.path.join(w, "dbin")
    os.makedirs(wbin)
    for t in ["fw-sign", "fw-unseal", "fw-unpack", "fw-verify", "fw-fixate", "fw-switch", "fw-hook", "fw-fetch"]:
        with open(os.path.join(wbin, t), "w") as f:
            f.write(f'#!/bin/sh\nexec /usr/bin/time -a -o "${{FW_BENCH_TIMES:-/dev/null}}" -f "{t} %e %M" '
                    f'{q(ctx.tool(t))} "$@"\n')
        os.chmod(os.path.join(wbin, t), 0o755)
    env = dict(ctx.env, FW_BIN=wbin)
    targets = os.path.join(w, "targets")
    os.makedirs(targets)
    n = [0]

    def target_with_v1(pkg="v1.fw"):
        n[0] += 1
        t = os.path.join(targets, f"t{n[0]}")
        os.makedirs(t)
        ctx.sh(f"{install} -q --target {t} --keyring {ring} {www}/{pkg}", "installing v1", env=env)
        return t

    def drop(t):
        shutil.rmtree(t, ignore_errors=True)

    try:
        # Bytes: fw delta (both kinds of package), fw full.
        ctx.log("delta: fw delta and fw full, bytes over the wire")
        for kind, v1p, v2p in [("encrypted", "v1.fw", "v2.fw"), ("signed", "v1-plain.fw", "v2-plain.fw")]:
            t = target_with_v1(v1p)
            nginx.take()
            times = os.path.join(w, f"delta-{kind}.times")
            ctx.sh(f"{install} -q --delta --target {t} --keyring {ring} {nginx.url(v2p)}", "fw delta",
                   env=dict(env, FW_BENCH_TIMES=times))
            sent, requests = nginx.take()
            result[f"fw_delta_{kind}"] = {"bytes": sent, "requests": requests,
                                          "fetch_rss_kib": rss_kib(times, "fw-fetch"),
                                          "unpack_rss_kib": rss_kib(times, "fw-unpack")}
            ctx.log(f"  fw delta ({kind}): {result[f'fw_delta_{kind}']}")
            drop(t)
        t = target_with_v1()
        nginx.take()
        ctx.sh(f"{install} -q --target {t} --keyring {ring} {nginx.url('v2.fw')}", "fw full", env=env)
        sent, requests = nginx.take()
        result["fw_full"] = {"bytes": sent, "requests": requests}
        ctx.log(f"  fw full: {result['fw_full']}; floor {result['floor']}")
        drop(t)

        # OSTree: an archive repo on the server with v1 and v2 and a static delta.
        ctx.log("delta: OSTree (commit v1, v2; static delta; pulls)")
        srv = os.path.join(www, "ostree")
        commits = {}

        def ostree_client(name, mode="archive"):
            repo = os.path.join(w, name)
            ctx.sh(f"""
ostree init --repo={repo} --mode={mode}
ostree remote add --repo={repo} --no-gpg-verify srv {nginx.url('ostree')}
ostree pull --repo={repo} srv {commits['v1']} >/dev/null
""", "ostree client with v1")
            return repo

        def ostree():
            ctx.sh(f"ostree init --repo={srv} --mode=archive", "ostree init")
            for name, tree in [("v1", v1), ("v2", v2)]:
                ctx.sh(f"ostree commit --repo={srv} --branch=fw --tree=dir={q(tree['path'])} "
                       f"{ostree_skip(w, tree)} -s {name} >/dev/null", f"ostree commit {name}")
                commits[name] = ctx.sh(f"ostree rev-parse --repo={srv} fw", "rev-parse", capture=True).strip()
            repo = ostree_client("ost-pull")
            nginx.take()
            ctx.sh(f"ostree pull --repo={repo} --disable-static-deltas srv {commits['v2']} >/dev/null",
                   "ostree pull")
            result["ostree_pull"] = dict(zip(["bytes", "requests"], nginx.take()))
            shutil.rmtree(repo)

        def ostree_static_delta():
            # A client finds static deltas through the repo's summary; without
            # one it silently pulls objects (a run measured that as the delta).
            ctx.sh(f"ostree static-delta generate --repo={srv} --from={commits['v1']} --to={commits['v2']} "
                   f">/dev/null && ostree summary --repo={srv} --update", "static delta")
            repo = ostree_client("ost-delta", "bare")  # an archive repo cannot apply static deltas
            nginx.take()
            ctx.sh(f"ostree pull --repo={repo} --require-static-deltas srv {commits['v2']} >/dev/null",
                   "ostree pull (static delta)")
            result["ostree_static_delta"] = dict(zip(["bytes", "requests"], nginx.take()))
            shutil.rmtree(repo)

        ostree_ok = ctx.peer(result, ["ostree_pull", "ostree_static_delta"], ostree)
        if ostree_ok:
            ctx.peer(result, ["ostree_static_delta"], ostree_static_delta)

        # casync: a chunk store of both trees; extract v2 seeded with v1.
        def casync():
            ctx.log("delta: casync (store of v1 and v2; seeded extract)")
            store = os.path.join(www, "castore")
            ctx.sh(f"""
casync make --store={store} {casync_excludes(v1)} {www}/v1.caidx {q(v1['path'])} >/dev/null
casync make --store={store} {casync_excludes(v2)} {www}/v2.caidx {q(v2['path'])} >/dev/null
""", "casync make")
            out = os.path.join(w, "casync-out")
            nginx.take()
            try:
                ctx.sh(f"casync extract --store={nginx.url('castore')} --seed={q(v1['path'])} "
                       f"{nginx.url('v2.caidx')} {out}", "casync extract")
                result["casync"] = dict(zip(["bytes", "requests"], nginx.take()))
            finally:
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(store, ignore_errors=True)

        ctx.peer(result, ["casync"], casync)

        # zchunk: zck of a tar of each tree; the size a delta would fetch.
        def zchunk():
            ctx.log("delta: zchunk (tar.zck of each; zck_delta_size)")
            zd = os.path.join(w, "zck")
            os.makedirs(zd)
            try:
                for name, tree in [("v1", v1), ("v2", v2)]:
                    ex = " ".join(f"--exclude=./{q(g)}" for g in tree["excludes"])
                    ctx.sh(f"tar -C {q(tree['path'])} {ex} --sort=name -cf {zd}/{name}.tar . && "
                           f"zck -o {zd}/{name}.tar.zck {zd}/{name}.tar >/dev/null && rm {zd}/{name}.tar",
                           f"zck {name}")
                text = ctx.sh(f"zck_delta_size {zd}/v1.tar.zck {zd}/v2.tar.zck", "zck_delta_size", capture=True)
                m = re.search(r"Would download (\d+) of (\d+) bytes", text)
                result["zchunk"] = {"bytes": int(m.group(1)) if m else None, "text": text.strip()[-300:]}
            finally:
                shutil.rmtree(zd, ignore_errors=True)

        ctx.peer(result, ["zchunk"], zchunk)

        # Wall time over a 20 Mbit/s link.
        ctx.log(f"delta: wall time over 20 Mbit/s, {runs} runs each (fw full, fw delta, OSTree pull + checkout)")
        walls = {"fw_full": [], "fw_delta": []} | ({"ostree": []} if ostree_ok else {})
        for i in range(runs):
            t = target_with_v1()
            walls["fw_delta"].append(timed(ctx, f"{install} -q --delta --target {t} --keyring {ring} "
                                                f"{proxy.url('v2.fw')}", env=env))
            drop(t)
            t = target_with_v1()
            walls["fw_full"].append(timed(ctx, f"{install} -q --target {t} --keyring {ring} "
                                               f"{proxy.url('v2.fw')}", env=env))
            drop(t)
            if ostree_ok:
                repo = ostree_client(f"ost-wall-{i}")
                ctx.sh(f"ostree remote add --repo={repo} --no-gpg-verify slow {proxy.url('ostree')}", "remote")
                co = os.path.join(w, f"ost-co-{i}")
                walls["ostree"].append(timed(ctx, f"ostree pull --repo={repo} --disable-static-deltas slow "
                                                  f"{commits['v2']} >/dev/null && ostree checkout --repo={repo} "
                                                  f"{commits['v2']} {co}"))
                shutil.rmtree(repo)
                shutil.rmtree(co, ignore_errors=True)
            ctx.log(f"  run {i + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in walls.items()))
        result["wall"] = {k: {"median": round(statistics.median(v), 2), "min": round(min(v), 2), "runs": v}
                          for k, v in walls.items()}
    finally:
        proxy.stop()
        nginx.stop()
    return result


def ostree_skip(work, tree):
    """ostree commit's --skip-list of the tree's excluded paths (dev/* of a root filesystem).

    ostree 2022.7 skips only what the list names as a directory of the
    tree, not the files in it: a `DIR/*` glob skips DIR itself."""
    import fnmatch
    path = os.path.join(work, f"skip-{len(os.listdir(work))}")
    skipped = ["/" + g[:-2] for g in tree["excludes"] if g.endswith("/*") and not any(c in g[:-2] for c in "*?[")]
    for top, dirs, files in os.walk(tree["path"]):
        for name in dirs + files:
            rel = os.path.relpath(os.path.join(top, name), tree["path"])
            if any(fnmatch.fnmatch(rel, g) for g in tree["excludes"]) and not any(
                    ("/" + rel).startswith(d + "/") for d in skipped):
                skipped.append("/" + rel)
    if not skipped:
        return ""
    with open(path, "w") as f:
        f.write("\n".join(skipped) + "\n")
    return f"--skip-list={q(path)}"


def casync_excludes(tree):
    """casync has no path excludes: leave out what fw leaves out of a root filesystem (device nodes)."""
    return "--without=device-nodes --without=fifos --without=sockets"


def render(result):
    floor = result["floor"]["bytes"]

    def row(name, key, note=lambda r: f"{r['requests']} requests"):
        r = result.get(key) or {"bytes": None, "error": "not run"}
        if r.get("bytes") is None:
            return name, None, "not measured: " + r.get("error", "?").splitlines()[-1][:60]
        return name, r["bytes"], note(r)

    rows = [
        ("floor: gzip -6 of each new v2 content", floor, f"{result['floor']['files']} files"),
        row("fw full: the whole v2 package", "fw_full"),
        row("fw delta (encrypted package)", "fw_delta_encrypted"),
        row("fw delta (signed-only package)", "fw_delta_signed"),
        row("OSTree pull (new objects, archive repo)", "ostree_pull"),
        row("OSTree static delta v1 -> v2", "ostree_static_delta"),
        row("casync (v1 tree as seed)", "casync"),
        row("zchunk (zck_delta_size, tar.zck of each)", "zchunk", lambda r: "computed"),
    ]
    out = [f"{'v1 -> v2: bytes over the wire':<44} {'bytes':>13} {'x floor':>8}  note", "-" * 80]
    for name, b, note in rows:
        ratio = f"{b / floor:.2f}" if b and floor else "-"
        out.append(f"{name:<44} {b if b is not None else '-':>13} {ratio:>8}  {note}")
    out.append("")
    for kind in ["encrypted", "signed"]:
        d = result[f"fw_delta_{kind}"]["bytes"]
        out.append(f"fw delta ({kind}) / floor = {d / floor:.3f} -> {'met' if d <= 1.1 * floor else 'MISS'} (<= 1.10)")
    for kind in ["encrypted", "signed"]:
        for tool in ["fetch", "unpack"]:
            rss = result[f"fw_delta_{kind}"].get(f"{tool}_rss_kib")
            if rss:
                out.append(f"fw-{tool}{' --delta' if tool == 'unpack' else ''} peak RSS ({kind} package) "
                           f"{rss / 1024:.1f} MiB -> {'met' if rss <= 32 * 1024 else 'MISS'} (<= 32 MiB)")
    w = result.get("wall")
    if w:
        out.append("")
        out.append(f"wall time of the upgrade over 20 Mbit/s ({result['runs']} runs, median / min, s):")
        for k, name in [("fw_delta", "fw delta (fw-install --delta URL)"), ("fw_full", "fw full (fw-install URL)"),
                        ("ostree", "OSTree pull + checkout")]:
            if k in w:
                out.append(f"  {name:<40} {w[k]['median']:>7.1f} {w[k]['min']:>7.1f}")
            else:
                out.append(f"  {name:<40} not measured (see above)")
    return "\n".join(out)
