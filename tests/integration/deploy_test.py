#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Deploying ktlsd (issue 16), with the real binary:

    deploy_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki TEST

version        --version / -V name version, commit, OpenSSL and liburing; bare ktlsd: exit 2
unsafe         a server target / client listen address off the host: exit 2 unless
               --unsafe-target / --unsafe-listen
sandbox        --user nobody: every thread's uid, CapEff, NoNewPrivs and Seccomp in /proc;
               inside the live daemon (gdb) a file beside the cert reads, also one renamed
               in after start, /etc/passwd does not, chroot fails, exec kills it
sandbox_caps   a privileged listen port keeps exactly CAP_NET_BIND_SERVICE; an unreadable
               key is warned about; --no-landlock --no-seccomp turn both off
units          deploy/*.service and ktlsd.socket pass systemd-analyze verify; the offline
               security exposure of each service is at most 2.0
notify         under a fake $NOTIFY_SOCKET: STATUS= and READY=1 once listening, WATCHDOG=1
               at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM (all through the sandbox)
activation     --listen systemd:NAME takes the socket systemd-socket-activate passes; errors
               for no socket, a wrong name, a client socket off loopback
man_options    the options getopt takes (config.c), --help of each command, ktlsd(8) and
               the keys in ktlsd.conf(5) are the same sets; the man pages were built
readme_options README.md's Usage block names the same options as the CLI
k8s            deploy/k8s/*.yaml parse (python3-yaml); every ktlsd container's args, and
               every ktlsd.conf in a ConfigMap, start ktlsd for real (the SVID paths mapped
               to a test PKI, ports to free ones, target names to localhost)
package        scripts/package builds ktlsd_<version>_amd64.deb; apt installs it in a fresh
               Debian 12 chroot (debootstrap, cached under the build dir); there ktlsd
               --version runs, check-config names what the shipped ktlsd.conf lacks, and
               passes once a PKI is in /etc/ktlsd/tls; user ktlsd exists. Skips without
               the Debian mirror.
"""
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import pki_extra as px  # noqa: E402
from harness import (SANITIZER, Fail, Ktlsd, Skip, check, echo_roundtrip, free_port,  # noqa: E402
                     keepalive_timer, main, tls_close, tls_ctx)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(env, args, **kw):
    return subprocess.run([env.args.ktlsd] + args, capture_output=True, text=True,
                          timeout=kw.pop("timeout", 20), **kw)


def t_version(env):
    for flag in ("--version", "-V"):
        r = run(env, [flag])
        check(r.returncode == 0, f"{flag}: exit {r.returncode} {r.stderr!r}")
        out = r.stdout
        check(re.match(r"ktlsd \d+\.\d+\.\d+\n", out), f"{flag}: first line: {out!r}")
        check(re.search(r"^commit: [0-9a-f]{7,}(-dirty)?$|^commit: unknown$", out, re.M),
              f"{flag}: no commit: {out!r}")
        check(re.search(r"^openssl: OpenSSL 3\.", out, re.M), f"{flag}: no OpenSSL: {out!r}")
        check(re.search(r"^liburing: 2\.\d+", out, re.M), f"{flag}: no liburing: {out!r}")
    r = run(env, [])
    check(r.returncode == 2 and "usage: ktlsd" in r.stderr and not r.stdout,
          f"bare ktlsd: exit {r.returncode} {r.stderr!r}")
    print(run(env, ["--version"]).stdout.strip())


def t_unsafe(env):
    p = env.p
    common = ["--cert", p("server.pem"), "--key", p("server.key"), "--cacert", p("ca.pem")]
    port = free_port()
    srv = ["server", "--listen", f"127.0.0.1:{port}", "--allow-all"] + common
    r = run(env, srv + ["--target", "192.0.2.1:80"])
    check(r.returncode == 2 and r.stderr.strip() ==
          "ktlsd: --target 192.0.2.1:80 is not a loopback address or unix socket: the "
          "plaintext ktlsd decrypts for it would cross the network (give --unsafe-target "
          "if that is what you want)", f"server, remote target: {r.returncode} {r.stderr!r}")
    cli = ["client", "--target", "192.0.2.1:443", "--verify-any"] + common
    r = run(env, cli + ["--listen", f"0.0.0.0:{port}"])
    check(r.returncode == 2 and "--listen 0.0.0.0:" in r.stderr and "--unsafe-listen" in
          r.stderr, f"client, wildcard listen: {r.returncode} {r.stderr!r}")
    print(f"refused: {r.stderr.strip()}")
    # With the flag each one starts.
    for argv in (srv + ["--target", "192.0.2.1:80", "--unsafe-target"],
                 cli + ["--listen", f"0.0.0.0:{port}", "--unsafe-listen"]):
        log = os.path.join(env.dir, f"unsafe-{argv[0]}.log")
        pr = env.spawn([env.args.ktlsd] + argv + ["--threads", "1"], stderr=open(log, "w"))
        Ktlsd(pr, port, log).wait_line(r"event=listening")
        pr.send_signal(signal.SIGTERM)
        check(pr.wait(timeout=10) == 0, f"{argv[0]} with the unsafe flag: exit {pr.returncode}")


def proc_status(pid):
    """{tid: {field: value}} for every thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            out[tid] = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    return out


SCHED_IDLE = 5


def sched_policy(pid, tid):
    """A thread's scheduling policy: field 41 of /proc/PID/task/TID/stat."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[38])


def no_core():
    """gdb may crash when its inferior is killed under it: no core file in the cwd."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def gdb_calls(pid, exprs):
    """Evaluates each C expression inside the live process; returns their int values."""
    argv = ["gdb", "-p", str(pid), "-batch", "-nx"]
    for e in exprs:
        argv += ["-ex", f"print {e}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, preexec_fn=no_core)
    vals = re.findall(r"^\$\d+ = (-?\d+)", r.stdout, re.M)
    if len(vals) != len(exprs) and "ptrace" in r.stderr + r.stdout:
        raise Skip(f"gdb cannot attach: {r.stderr[-300:]}")
    check(len(vals) == len(exprs), f"gdb: {r.stdout[-500:]} {r.stderr[-500:]}")
    return [int(v) for v in vals]


def sandbox_skip():
    if SANITIZER:
        raise Skip("sanitizer builds run without Landlock and seccomp (their runtimes need "
                   "/proc and ptrace)")
    if os.geteuid() != 0:
        raise Skip("switching users needs root")


def share_pki(env, mode=0o640):
    """The PKI readable by nobody's group, as an operator would set it up."""
    os.chmod(env.dir, 0o755)
    os.chmod(env.pki, 0o755)
    for f in os.listdir(env.pki):
        os.chown(env.p(f), 0, 65534)
        os.chmod(env.p(f), mode)


def t_sandbox(env):
    sandbox_skip()
    if not shutil.which("gdb"):
        raise Skip("gdb not installed (scripts/install-deps installs it)")
    share_pki(env)
    eport = env.echo_backend()
    k = env.ktlsd(["--user", "nobody", "--handshake-thread"], target_port=eport)
    line = k.wait_line(r"event=sandbox ")
    check(re.search(r"user=nobody uid=65534 caps=none landlock=on landlock_abi=\d+ "
                    r"seccomp=on", line), f"sandbox line: {line}")
    check("sandbox_unreadable" not in k.text(), "a readable file was reported unreadable")
    check("sandbox_broad_read" not in k.text(), "files in a folder of their own reported broad")
    # A CRL kept directly in /tmp opens all of /tmp to the sandbox: said at start.
    crl = f"/tmp/ktlsd-broad-{os.getpid()}.crl"
    px.make_crl(env.p("ca"), crl)
    os.chmod(crl, 0o644)
    try:
        kb = env.ktlsd(["--user", "nobody", "--crl", crl], target_port=env.echo_backend())
        broad = kb.wait_line(r"event=sandbox_broad_read")
        check("dir=/tmp " in broad and "level=warn" in broad, f"broad read line: {broad}")
        kb.proc.send_signal(signal.SIGTERM)
        kb.proc.wait(timeout=15)
    finally:
        os.unlink(crl)
    print("a CRL directly in /tmp: warned, sandbox_broad_read dir=/tmp")
    st = proc_status(k.proc.pid)
    check(len(st) == 5, f"expected main + 2 workers + their handshake threads: {len(st)} "
          "threads")
    # The handshake threads lowered themselves to SCHED_IDLE under the seccomp filter.
    idle = [t for t in st if sched_policy(k.proc.pid, t) == SCHED_IDLE]
    check(len(idle) == 2, f"expected 2 SCHED_IDLE threads: {len(idle)}")
    check("handshake_thread_priority" not in k.text(), "a handshake thread kept its priority")
    for tid, s in st.items():
        check(s["Uid"].split() == ["65534"] * 4 and s["Gid"].split() == ["65534"] * 4,
              f"thread {tid}: Uid {s['Uid']} Gid {s['Gid']}")
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            check(int(s[cap], 16) == 0, f"thread {tid}: {cap} {s[cap]}")
        check(s["NoNewPrivs"] == "1" and s["Seccomp"] == "2",
              f"thread {tid}: NoNewPrivs {s['NoNewPrivs']} Seccomp {s['Seccomp']}")
    check(echo_roundtrip(env, k.port) == b"ping over ktlsd\n", "echo through the sandbox")
    k.conn_end(r"reason=closed")
    print(f"sandbox: {line.split('event=sandbox ')[1]}; {len(st)} threads uid 65534, "
          "no capabilities, seccomp filter mode")

    # A writer replaces the certificate by rename (as spiffe-helper does) after the drop.
    new = env.p(".server.pem.new")
    shutil.copy(env.p("server.pem"), new)
    os.chown(new, 0, 65534)
    os.chmod(new, 0o640)
    os.rename(new, env.p("server.pem"))
    outside = os.path.join(env.dir, "outside.txt")
    with open(outside, "w") as f:
        f.write("not for ktlsd\n")
    os.chmod(outside, 0o644)
    cert, ca = env.p("server.pem"), env.p("ca.pem")
    fd_cert, fd_ca, fd_out, fd_passwd, chroot = gdb_calls(k.proc.pid, [
        f'(int)open("{cert}", 0)', f'(int)open("{ca}", 0)', f'(int)open("{outside}", 0)',
        '(int)open("/etc/passwd", 0)', '(int)chroot("/")'])
    check(fd_cert >= 0 and fd_ca >= 0, f"configured files unreadable: {fd_cert} {fd_ca}")
    check(fd_out == -1, f"a file outside the configured folders opened: fd {fd_out}")
    check(fd_passwd == -1, f"/etc/passwd opened: fd {fd_passwd}")
    check(chroot == -1, "chroot did not fail")
    print("in the daemon: replaced cert and CA open; outside.txt, /etc/passwd: -1; "
          "chroot: -1")
    check(echo_roundtrip(env, k.port) == b"ping over ktlsd\n", "echo after the probes")
    # Only code injected into ktlsd would exec: the filter kills the process.
    subprocess.run(["gdb", "-p", str(k.proc.pid), "-batch", "-nx", "-ex",
                    'print (int)execl("/bin/true", "true", 0)'],
                   capture_output=True, text=True, timeout=120, preexec_fn=no_core)
    rc = k.proc.wait(timeout=10)
    check(rc == -signal.SIGSYS, f"exec under seccomp: exit {rc}, expected SIGSYS")
    print("exec inside the daemon: killed by SIGSYS")


def low_port():
    for port in range(1023, 900, -1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise Skip("no free port below 1024")


def t_sandbox_caps(env):
    sandbox_skip()
    share_pki(env)
    eport = env.echo_backend()
    k = env.ktlsd(["--user", "nobody"], target_port=eport, listen_port=low_port())
    line = k.wait_line(r"event=sandbox ")
    check("caps=net_bind_service " in line, f"sandbox line: {line}")
    for tid, s in proc_status(k.proc.pid).items():
        check(int(s["CapEff"], 16) == 1 << 10 and int(s["CapPrm"], 16) == 1 << 10,
              f"thread {tid}: CapEff {s['CapEff']} CapPrm {s['CapPrm']}")
    check(echo_roundtrip(env, k.port) == b"ping over ktlsd\n", "echo on a low port")
    print(f"port {k.port}: {line.split('event=sandbox ')[1]}")

    os.chmod(env.p("server.key"), 0o600)  # root's alone: a reload as nobody cannot read it
    k2 = env.ktlsd(["--user", "nobody"], target_port=eport)
    w = k2.wait_line(r"event=sandbox_unreadable")
    check(f"file={env.p('server.key')}" in w and "Permission denied" in w, w)
    print(f"warned: {w.split('event=')[1]}")

    k3 = env.ktlsd(["--no-landlock", "--no-seccomp"], target_port=eport)
    line = k3.wait_line(r"event=sandbox ")
    check("landlock=off" in line and "seccomp=off" in line, line)
    check(all(s["Seccomp"] == "0" for s in proc_status(k3.proc.pid).values()),
          "--no-seccomp left a filter")

    r = run(env, ["server", "--listen", f"127.0.0.1:{free_port()}", "--target", "127.0.0.1:1",
                  "--cert", env.p("server.pem"), "--key", env.p("server.pem"), "--cacert",
                  env.p("ca.pem"), "--allow-all", "--user", "no-such-user-ktlsd"])
    check(r.returncode == 2, f"unknown user: exit {r.returncode} {r.stderr!r}")


def unit_copy(env, name):
    """deploy/NAME with ExecStart pointing at the binary under test."""
    with open(os.path.join(ROOT, "deploy", name)) as f:
        text = f.read().replace("/usr/sbin/ktlsd", os.path.abspath(env.args.ktlsd))
    path = os.path.join(env.dir, "units", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def t_units(env):
    if not shutil.which("systemd-analyze"):
        raise Skip("systemd-analyze not installed (package systemd; scripts/install-deps)")
    units = [unit_copy(env, n) for n in ("ktlsd.service", "ktlsd@.service", "ktlsd.socket")]
    # --man=no: the man pages are checked against the CLI in man_options, not installed here.
    r = subprocess.run(["systemd-analyze", "verify", "--man=no"] + units, capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 0 and not r.stderr.strip(),
          f"systemd-analyze verify: {r.returncode} {r.stdout} {r.stderr}")
    for u in units[:2]:
        r = subprocess.run(["systemd-analyze", "security", "--offline=yes", u],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
        check(m, f"security {u}: {r.stdout[-300:]} {r.stderr[-300:]}")
        check(float(m.group(1)) <= 2.0, f"{os.path.basename(u)} exposure {m.group(1)} > 2.0")
        print(f"{os.path.basename(u)}: verify clean, exposure {m.group(1)}")
    with open(os.path.join(ROOT, "deploy", "ktlsd.service")) as f:
        text = f.read()
    for want in ("Type=notify", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "CapabilityBoundingSet=", "AmbientCapabilities=", "RestrictAddressFamilies="):
        check(want in text, f"ktlsd.service lacks {want}")


def notify_socket(env):
    path = os.path.join(env.dir, "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    os.chmod(env.dir, 0o755)
    os.chmod(path, 0o777)
    s.settimeout(10)
    return s, path


def notify_until(s, want, seen):
    """Reads datagrams into seen until one has the line want."""
    while True:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            raise Fail(f"no {want!r} from ktlsd; got {seen}")
        seen.append(msg)
        if want in msg.split("\n"):
            return msg


def t_notify(env):
    s, path = notify_socket(env)
    eport = env.echo_backend()
    extra = ["--user", "nobody"] if os.geteuid() == 0 else []
    if extra:
        share_pki(env)
    k = env.ktlsd(extra, target_port=eport, wait=False,
                  env_vars={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    seen = []
    notify_until(s, "READY=1", seen)
    k.wait_line(r"event=listening")
    check(any(m.startswith("STATUS=listening: 1 service") for m in seen), f"no STATUS: {seen}")
    t0 = time.time()
    notify_until(s, "WATCHDOG=1", seen)
    notify_until(s, "WATCHDOG=1", seen)
    dt = time.time() - t0
    check(dt < 1.5, f"two watchdog pings took {dt:.2f} s (period 0.2 s)")
    check(echo_roundtrip(env, k.port) == b"ping over ktlsd\n", "echo")
    k.proc.send_signal(signal.SIGTERM)
    notify_until(s, "STOPPING=1", seen)
    check(k.proc.wait(timeout=10) == 0, "exit after SIGTERM")
    print("notify: " + " | ".join(sorted(set(m.replace("\n", ",") for m in seen))))


def activate(env, name, argv, log, host="127.0.0.1", keep=False):
    """systemd-socket-activate runs the command on the first connection: make one (with
    keep, also return it, open: it was queued before ktlsd ran)."""
    fd = ["--fdname=" + name[0]] if name[0] else []
    pr = env.spawn(["systemd-socket-activate", "-l", f"{host}:{name[1]}"] + fd
                   + [env.args.ktlsd] + argv, stderr=open(log, "w"), stdout=subprocess.DEVNULL)
    for _ in range(200):
        if "Listening on" in open(log).read():
            break
        time.sleep(0.05)
    first = socket.create_connection(("127.0.0.1", name[1]), timeout=5)
    if keep:
        return pr, first
    first.close()
    return pr


def t_activation(env):
    if not shutil.which("systemd-socket-activate"):
        raise Skip("systemd-socket-activate not installed (package systemd)")
    p = env.p
    eport, port = env.echo_backend(), free_port()
    common = ["--cert", p("server.pem"), "--key", p("server.key"), "--cacert", p("ca.pem"),
              "--threads", "2"]
    srv = ["server", "--target", f"127.0.0.1:{eport}", "--allow-uri",
           "spiffe://example.org/client"] + common
    log = os.path.join(env.dir, "act.log")
    pr, first = activate(env, ("https", port), srv + ["--listen", "systemd:https"], log,
                         keep=True)
    k = Ktlsd(pr, port, log)
    line = k.wait_line(r"event=listening")
    check("listen=systemd:https" in line, line)
    # The connection that started ktlsd was accepted by the kernel before ktlsd could set
    # anything on the socket: keepalive (and TCP_NODELAY) are set on it when ktlsd accepts.
    first = tls_ctx(env).wrap_socket(first, server_hostname="localhost")
    first.sendall(b"k")
    check(first.recv(1) == b"k", "echo over the connection that started ktlsd")
    t = keepalive_timer(f"( sport = :{port} )")
    check(0 < t <= 60, f"connection queued before ktlsd ran: keepalive timer {t}s, not <= 60s")
    tls_close(first)
    for _ in range(3):
        check(echo_roundtrip(env, port) == b"ping over ktlsd\n", "echo over systemd's socket")
    k.conn_end(r"reason=closed")
    pr.send_signal(signal.SIGTERM)
    check(pr.wait(timeout=10) == 0, "exit after SIGTERM")
    print(f"activation: {line.split('event=')[1][:80]}...")

    cases = [
        (None, srv + ["--listen", "systemd"],
         "ktlsd: --listen systemd: no socket passed by systemd"),
        (("web", port), srv + ["--listen", "systemd:https"],
         "ktlsd: --listen systemd:https: no socket of that name"),
        (("x", port), srv + ["--listen", "systemd:a:b"],
         "ktlsd: --listen 'systemd:a:b': expected systemd or systemd:NAME"),
    ]
    for name, argv, want in cases:
        if name:
            pr = activate(env, name, argv, log)
            rc = pr.wait(timeout=20)
            err = open(log).read().strip().splitlines()[-1]  # after the activator's lines
        else:
            r = run(env, argv)
            rc, err = r.returncode, r.stderr
        check(rc == 2 and err.startswith(want), f"{argv[-1]}: exit {rc} {err!r}")
        print(f"refused: {err.strip()}")
    # A client's plaintext socket must be on loopback, also when systemd made it.
    cli = ["client", "--target", f"127.0.0.1:{port}", "--verify-any", "--listen",
           "systemd"] + common
    pr = activate(env, (None, free_port()), cli, log, host="0.0.0.0")
    rc = pr.wait(timeout=20)
    err = open(log).read()
    check(rc == 2 and "not on a loopback address" in err, f"client on 0.0.0.0: {rc} {err!r}")


OPT = r"--([a-z][a-z0-9-]*[a-z0-9])(?![a-z0-9-])"


def source_options():
    """{'server': set, 'client': set} from the getopt tables in daemon/conf/config.c."""
    with open(os.path.join(ROOT, "daemon", "conf", "config.c")) as f:
        src = f.read()
    out = {}
    for role in ("server", "client"):
        m = re.search(rf"static const struct option {role}_opts\[\] = {{(.*?)\n}};", src, re.S)
        check(m, f"no {role}_opts table in config.c")
        out[role] = set(re.findall(r'\{ "([a-z0-9-]+)",', m.group(1)))
    return out


def subcommand_options(file, table):
    """The long options of a subcommand's own getopt table in daemon/cli/FILE."""
    with open(os.path.join(ROOT, "daemon", "cli", file)) as f:
        src = f.read()
    m = re.search(rf"static const struct option {table}\[\] = {{(.*?)\n\s*}};", src, re.S)
    check(m, f"no {table} table in {file}")
    return set(re.findall(r'\{ "([a-z0-9-]+)",', m.group(1)))


def source_keys():
    with open(os.path.join(ROOT, "daemon", "conf", "config.c")) as f:
        src = f.read()
    keys = set(re.findall(r'\.name = "([a-z0-9-]+)"', src))
    m = re.search(r"\(known: ([a-z, -]+)\)", re.sub(r'"\n\s*"', "", src))
    check(m, "no list of [global] keys in config.c")
    return keys | {k.strip() for k in m.group(1).split(",")} | {"mode"}


def scd_section(name, title):
    with open(os.path.join(ROOT, "docs", "man", name)) as f:
        text = f.read()
    m = re.search(rf"^# {title}\n(.*?)(?=^# |\Z)", text, re.S | re.M)
    check(m, f"{name} has no section {title}")
    return m.group(1)


def t_man_options(env):
    src = source_options()
    for role in ("server", "client"):
        r = run(env, [role, "--help"])
        got = set(re.findall(OPT, r.stdout))
        want = src[role] - {"help"}
        check(got == want, f"{role} --help vs getopt: missing {sorted(want - got)}, "
              f"unknown {sorted(got - want)}")
    cli = src["server"] | src["client"]
    man = set(re.findall(r"\*" + OPT + r"\*", scd_section("ktlsd.8.scd", "OPTIONS")))
    check(man == cli, f"ktlsd(8) OPTIONS vs getopt: missing {sorted(cli - man)}, "
          f"unknown {sorted(man - cli)}")
    conf = "".join(scd_section("ktlsd.conf.5.scd", t) for t in ("GLOBAL KEYS", "SERVICE KEYS"))
    keys = set(re.findall(r"\*([a-z][a-z0-9-]*)\*(?!\()", conf)) - {"systemd", "unix"}
    want = source_keys()
    check(keys == want, f"ktlsd.conf(5) keys vs config.c: missing {sorted(want - keys)}, "
          f"unknown {sorted(keys - want)}")
    # Every key is an option (the flags' negations aside) and the other way round.
    opts = {o[3:] if o.startswith("no-") else o for o in cli} - {"help"}
    check(opts | {"mode"} == want, f"options vs keys: {sorted(opts ^ (want - {'mode'}))}")
    build = os.path.dirname(os.path.abspath(env.args.ktlsd))
    for page in ("ktlsd.8", "ktlsd.conf.5"):
        path = os.path.join(build, "man", page)
        if not os.path.exists(path):
            if not shutil.which("scdoc"):
                raise Skip(f"{path} not built (scdoc missing: scripts/install-deps)")
            raise Fail(f"{path} not built although scdoc is here: see the build's scdoc error")
        check(open(path).read().startswith(".\\\" Generated by scdoc"), f"{path}: not scdoc's")
    print(f"{len(cli)} options, {len(want)} keys: --help, getopt, ktlsd(8), ktlsd.conf(5) agree")


def t_readme_options(env):
    """The README's Usage block: indented lines after '## Usage' up to the first other."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## Usage\n\n((?:    .*\n|\n)+)", text, re.M)
    check(m, "README.md has no indented block right after '## Usage'")
    got = set(re.findall(OPT, m.group(1)))
    src = source_options()
    # --config FILE, --version, and probe's --json are the commands' own; status and agent
    # have getopt tables of their own.
    want = (src["server"] | src["client"] | {"config", "version", "json"} |
            subcommand_options("cmd_status.c", "opts") |
            subcommand_options("cmd_agent.c", "agent_options")) - {"help"}
    check(got == want, f"README.md Usage block vs the CLI: missing {sorted(want - got)}, "
          f"unknown {sorted(got - want)}")
    print(f"README.md Usage names all {len(want)} options")


def k8s_map(env, text):
    """The example's SVID files to the test PKI, its ports to free ones, names to localhost."""
    for a, b in (("svid_bundle.pem", "ca.pem"), ("svid_key.pem", "server.key"),
                 ("svid.pem", "server.pem")):
        text = text.replace(f"/run/ktlsd/certs/{a}", env.p(b))
    text = re.sub(r"(\d+\.\d+\.\d+\.\d+):(\d+)", lambda m: f"{m.group(1)}:{free_port()}", text)
    return re.sub(r"\b[a-z][a-z0-9.-]*\.(?:local|org|example):(\d+)",
                  lambda m: f"localhost:{free_port()}", text)


def k8s_start(env, argv, name):
    log = os.path.join(env.dir, f"k8s-{name}.log")
    pr = env.spawn([env.args.ktlsd] + argv, stderr=open(log, "w"))
    k = Ktlsd(pr, None, log)
    try:
        k.wait_line(r'event=listening|"event":"listening"', timeout=30)
    except Fail:
        raise Fail(f"{name}: ktlsd {' '.join(argv)} did not start: {k.text()[-400:]}")
    pr.send_signal(signal.SIGTERM)
    check(pr.wait(timeout=10) == 0, f"{name}: exit {pr.returncode}")


def t_k8s(env):
    try:
        import yaml
    except ImportError:
        raise Skip("python3-yaml not installed (scripts/install-deps)")
    kdir = os.path.join(ROOT, "deploy", "k8s")
    files = sorted(f for f in os.listdir(kdir) if f.endswith(".yaml"))
    check(files, "no deploy/k8s/*.yaml")
    n_args = n_conf = 0
    for f in files:
        docs = [d for d in yaml.safe_load_all(open(os.path.join(kdir, f))) if d]
        kinds = {d["kind"] for d in docs}
        check(kinds & {"Deployment", "DaemonSet"}, f"{f}: no workload")
        maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
        for d in docs:
            if d["kind"] not in ("Deployment", "DaemonSet"):
                continue
            spec = d["spec"]["template"]["spec"]
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                if "ktlsd" not in c.get("image", "").split("/")[-1]:
                    continue
                args = [str(a) for a in c.get("args", [])]
                if args[:1] == ["--config"]:
                    conf = args[1]
                    vol = next(m["name"] for m in c["volumeMounts"]
                               if conf.startswith(m["mountPath"] + "/"))
                    cm = next(v["configMap"]["name"] for v in spec["volumes"]
                              if v["name"] == vol)
                    text = k8s_map(env, maps[cm][os.path.basename(conf)])
                    path = os.path.join(env.dir, f"{f}-{c['name']}.conf")
                    with open(path, "w") as out:
                        out.write(text)
                    r = run(env, ["check-config", path])
                    check(r.returncode == 0, f"{f} {c['name']}: check-config: {r.stderr}")
                    k8s_start(env, ["--config", path], c["name"])
                    n_conf += 1
                else:
                    k8s_start(env, k8s_map(env, "\0".join(args)).split("\0"), c["name"])
                    n_args += 1
    check(n_args and n_conf, f"expected ktlsd args and a ktlsd.conf: {n_args} {n_conf}")
    print(f"{files}: {n_args} ktlsd command lines and {n_conf} config files started")


def mirror():
    try:
        with open("/etc/apt/sources.list.d/debian.sources") as f:
            m = re.search(r"^URIs: *(http\S*debian)$", f.read(), re.M)
            if m:
                return m.group(1)
    except OSError:
        pass
    return "http://deb.debian.org/debian"


def chroot_root(env, cache):
    """A fresh Debian 12 minbase tree: debootstrap once, then unpack the cached tarball."""
    tarball = os.path.join(cache, "bookworm-minbase.tar")
    root = os.path.join(env.dir, "root")
    if not os.path.exists(tarball):
        tmp = os.path.join(cache, "debootstrap")
        shutil.rmtree(tmp, ignore_errors=True)
        r = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", tmp, mirror()],
                           capture_output=True, text=True, timeout=900)
        check(r.returncode == 0, f"debootstrap: {r.stdout[-800:]} {r.stderr[-800:]}")
        subprocess.run(["tar", "-C", tmp, "-cf", tarball + ".new", "."], check=True)
        os.rename(tarball + ".new", tarball)
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(root)
    subprocess.run(["tar", "-C", root, "-xf", tarball], check=True)
    shutil.copy("/etc/resolv.conf", os.path.join(root, "etc", "resolv.conf"))
    return root


def in_root(root, cmd, timeout=600):
    return subprocess.run(["chroot", root, "sh", "-c", cmd], capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                "DEBIAN_FRONTEND": "noninteractive",
                                                "LC_ALL": "C"})


def t_package(env):
    if SANITIZER:
        raise Skip("scripts/package builds its own binary without sanitizers: the plain "
                   "pass installs and tests it")
    if os.geteuid() != 0:
        raise Skip("chroot and apt need root")
    for tool in ("debootstrap", "dpkg-deb", "chroot"):
        if not shutil.which(tool):
            raise Skip(f"{tool} not installed (scripts/install-deps)")
    r = subprocess.run(["curl", "-sfI", "--max-time", "15", f"{mirror()}/dists/bookworm/Release"],
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        raise Skip(f"the Debian mirror {mirror()} is unreachable: no fresh system to install in")
    build = os.path.dirname(os.path.abspath(env.args.ktlsd))
    cache = os.path.join(build, "deploy-cache")
    os.makedirs(cache, exist_ok=True)
    r = subprocess.run([os.path.join(ROOT, "scripts", "package")], capture_output=True,
                       text=True, timeout=900,
                       env=dict(os.environ, KTLSD_PACKAGE_DIR=os.path.join(cache, "package")))
    check(r.returncode == 0, f"scripts/package: {r.stdout[-800:]} {r.stderr[-800:]}")
    deb = r.stdout.strip().splitlines()[-1]
    check(re.search(r"/ktlsd_\d+\.\d+\.\d+_amd64\.deb$", deb) and os.path.exists(deb),
          f"last line of scripts/package is not the .deb: {deb!r}")
    files = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True).stdout
    for want in ("./usr/sbin/ktlsd", "./usr/lib/systemd/system/ktlsd.service",
                 "./usr/lib/systemd/system/ktlsd@.service", "./etc/ktlsd/ktlsd.conf",
                 "./usr/share/man/man8/ktlsd.8", "./usr/share/man/man5/ktlsd.conf.5",
                 "./usr/share/doc/ktlsd/README.md"):
        check(re.search(rf" {re.escape(want)}$", files, re.M), f"{deb} lacks {want}")
    root = chroot_root(env, cache)
    proc = os.path.join(root, "proc")
    subprocess.run(["mount", "-t", "proc", "proc", proc], check=True)
    try:
        package_in_root(env, root, deb)
    finally:
        subprocess.run(["umount", "-l", proc])


def package_in_root(env, root, deb):
    shutil.copy(deb, os.path.join(root, "tmp", os.path.basename(deb)))
    r = in_root(root, f"apt-get update -qq && apt-get install -y -qq "
                f"--no-install-recommends /tmp/{os.path.basename(deb)}")
    check(r.returncode == 0, f"apt install: {r.stdout[-1500:]} {r.stderr[-1500:]}")
    r = in_root(root, "ktlsd --version")
    check(r.returncode == 0 and r.stdout.startswith("ktlsd "), f"--version: {r.stdout!r} "
          f"{r.stderr!r}")
    print("in a fresh Debian 12: " + r.stdout.splitlines()[0])
    r = in_root(root, "ktlsd check-config /etc/ktlsd/ktlsd.conf")
    check(r.returncode == 2 and re.match(r"ktlsd: /etc/ktlsd/ktlsd.conf:\d+: cert "
                                         r"/etc/ktlsd/tls/server.pem: No such file",
                                         r.stderr), f"shipped config: {r.returncode} {r.stderr!r}")
    print(f"shipped config: {r.stderr.strip()}")
    tls = os.path.join(root, "etc", "ktlsd", "tls")
    shutil.copytree(env.pki, tls)
    r = in_root(root, "chown -R root:ktlsd /etc/ktlsd/tls && chmod 0640 /etc/ktlsd/tls/* && "
                "ktlsd check-config /etc/ktlsd/ktlsd.conf && stat -c '%U:%G %a' /etc/ktlsd && "
                "getent passwd ktlsd && test -f /usr/share/man/man8/ktlsd.8 && "
                "grep -qx tls /usr/lib/modules-load.d/ktlsd.conf && dpkg-query -W -f="
                "'${Conffiles}' ktlsd")
    check(r.returncode == 0, f"after adding a PKI: {r.stdout!r} {r.stderr!r}")
    check("root:ktlsd 750" in r.stdout and "/etc/ktlsd/ktlsd.conf" in r.stdout,
          f"owner/conffile: {r.stdout!r}")
    print("with a PKI in /etc/ktlsd/tls: " + r.stdout.splitlines()[0])


TESTS = {
    "version": t_version,
    "unsafe": t_unsafe,
    "sandbox": t_sandbox,
    "sandbox_caps": t_sandbox_caps,
    "units": t_units,
    "notify": t_notify,
    "activation": t_activation,
    "man_options": t_man_options,
    "readme_options": t_readme_options,
    "k8s": t_k8s,
    "package": t_package,
}

if __name__ == "__main__":
    sys.exit(main(TESTS))
