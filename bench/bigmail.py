#!/usr/bin/env python3
"""Memory under big mail: tomare's peak RSS while ten 45 MB messages arrive
at once, and while ten 45 MB DATA transfers hang unfinished.

Usage: bench/bigmail.py [--bin target/release/tomare] [--count 10] [--mb 45]

Starts `tomare serve` on the embedded default (archive on, sandbox
delivery) in a fresh directory; half the messages carry a CSV of Japanese
text, half a zip of incompressible bytes, each attachment base64-encoded so
the message is --mb MB. Prints peak RSS (VmHWM) of the server process after
each phase, and how many messages were delivered to the sandbox.
"""
import argparse, base64, io, os, random, socket, smtplib, subprocess, sys, tempfile, threading, time, zipfile

def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    return 0

def message(i, size):
    raw = size * 3 // 4 - 4096
    if i % 2 == 0:
        row = "田中太郎,東京都千代田区丸の内1-1-1,03-1234-5678,見積書 第%d版\n".encode("utf-8")
        body = row * (raw // len(row))
        name, ctype = "顧客一覧.csv", "text/csv; charset=utf-8"
    else:
        rnd = random.Random(i).randbytes(raw - 200)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            z.writestr("data.bin", rnd)
        body, name, ctype = buf.getvalue(), "data.zip", "application/zip"
    b64 = base64.encodebytes(body).replace(b"\n", b"\r\n")
    head = (f"From: taro@example.com\r\nTo: hanako@example.com\r\nSubject: big {i}\r\n"
            f"Message-ID: <big{i}@bench>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            f"--b\r\nContent-Type: {ctype}\r\nContent-Disposition: attachment; filename*=UTF-8''x\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode()
    return head + b64 + b"\r\n--b--\r\n"

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/tomare")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--mb", type=int, default=45)
    ap.add_argument("--extra", default="", help="more config lines, e.g. '[archive]\\nenabled = false'")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tomare-bigmail.")
    smtp, web = f"127.0.0.1:{port()}", f"127.0.0.1:{port()}"
    cfg = os.path.join(work, "tomare.toml")
    open(cfg, "w").write(f'[smtp]\nlisten = "{smtp}"\nmax_message_size = "{a.mb + 5}MB"\n'
                         f'[web]\nlisten = "{web}"\n[storage]\ndata_dir = "{work}/data"\nmin_free = "100MB"\n'
                         '[hold]\nexternal = "0s"\n' + a.extra.replace("\\n", "\n") + "\n")
    log = open(os.path.join(work, "serve.log"), "w")
    env = dict(os.environ, TOMARE_LOG=os.environ.get("TOMARE_LOG", "info"))
    server = subprocess.Popen([a.bin, "serve", "--config", cfg], stdout=log, stderr=log, env=env)
    host, p = smtp.split(":")
    for _ in range(200):
        try:
            socket.create_connection((host, int(p)), 0.2).close(); break
        except OSError:
            time.sleep(0.1)
    base = status(server.pid, "VmRSS")
    msgs = [message(i, a.mb * 1000 * 1000) for i in range(a.count)]
    print(f"{a.count} messages of {len(msgs[0]) / 1e6:.1f} MB; server RSS at start {base} MiB")

    # Phase 1: unfinished DATA transfers that hang.
    socks = []
    for m in msgs:
        s = socket.create_connection((host, int(p)))
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO bench\r\nMAIL FROM:<taro@example.com>\r\nRCPT TO:<hanako@example.com>\r\nDATA\r\n")
        for _ in range(4):  # EHLO, MAIL, RCPT, DATA
            while True:
                line = f.readline()
                if not line:
                    raise SystemExit("the server closed the connection")
                if line.startswith((b"250 ", b"354")):
                    break
        s.sendall(m[: len(m) - 1000])
        socks.append((s, f))
    time.sleep(2)
    hung = status(server.pid, "VmRSS")
    print(f"phase 1: {a.count} unfinished DATA of {a.mb} MB hanging: RSS {hung} MiB (peak so far {status(server.pid, 'VmHWM')} MiB)")
    for s, _ in socks:
        s.close()
    time.sleep(1)

    # Phase 2: the same messages, all at once, to the end.
    t0 = time.time()
    samples = []
    def sample():
        while server.poll() is None and not done.is_set():
            samples.append((time.time() - t0, status(server.pid, "VmRSS")))
            time.sleep(0.2)
    done = threading.Event()
    sampler = threading.Thread(target=sample); sampler.start()
    errors = []
    def send(m):
        try:
            with smtplib.SMTP(host, int(p), timeout=600) as c:
                c.sendmail("taro@example.com", ["hanako@example.com"], m)
        except Exception as e:
            errors.append(e)
    threads = [threading.Thread(target=send, args=(m,)) for m in msgs]
    [t.start() for t in threads]
    [t.join() for t in threads]
    accepted = time.time() - t0
    sandbox = os.path.join(work, "data", "sandbox")
    for _ in range(1200):
        n = len([f for f in os.listdir(sandbox) if f.endswith(".eml")]) if os.path.isdir(sandbox) else 0
        if n >= a.count:
            break
        time.sleep(0.5)
    # Let the archiver finish its rounds.
    time.sleep(5)
    peak = status(server.pid, "VmHWM")
    done.set(); sampler.join()
    if os.environ.get("TRACE"):
        print(" ".join(f"{t:.1f}s:{r}" for t, r in samples))
        print(open(os.path.join(work, "serve.log")).read()[-6000:])
    print(f"phase 2: {a.count} x {a.mb} MB at once: accepted in {accepted:.1f} s, {n} delivered in "
          f"{time.time() - t0:.1f} s, errors {len(errors)}; server peak RSS {peak} MiB")
    server.terminate(); server.wait()
    subprocess.run(["rm", "-rf", work])
    return 0 if not errors and n >= a.count else 1

sys.exit(main())
