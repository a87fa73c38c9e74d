#!/usr/bin/env python3
"""Does the AUTH reply time tell whether an account exists?

Usage: bench/auth_timing.py [--bin target/release/tomare] [--rounds 30]

Starts `tomare serve` with STARTTLS (a throw-away certificate from openssl)
and one account, then alternates AUTH PLAIN attempts for an unknown account
and for the known one with a wrong password, each on a fresh STARTTLS
session, timing AUTH to its reply. Prints the median and spread of both
and their difference (the lockout is raised out of the way for this).
"""
import argparse, base64, os, smtplib, socket, statistics, subprocess, sys, tempfile, time

def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/tomare")
    ap.add_argument("--rounds", type=int, default=30)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tomare-auth.")
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    smtp, web = port(), port()
    cfg = os.path.join(work, "tomare.toml")
    open(cfg, "w").write(f'[smtp]\nlisten = "127.0.0.1:{smtp}"\nallowed_networks = []\n'
                         'auth_max_failures = 100000\nauth_max_failures_per_ip = 100000\n'
                         f'[smtp.tls]\ncert = "{cert}"\nkey = "{key}"\n'
                         f'[web]\nlisten = "127.0.0.1:{web}"\n[storage]\ndata_dir = "{work}/data"\nmin_free = "1MB"\n')
    subprocess.run([a.bin, "user", "add", "taro@example.com", "--config", cfg], input=b"right password\n",
                   check=True, capture_output=True)
    server = subprocess.Popen([a.bin, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", smtp), 0.2).close(); break
        except OSError:
            time.sleep(0.1)
    def attempt(user):
        c = smtplib.SMTP("127.0.0.1", smtp, timeout=30)
        c.starttls(); c.ehlo()
        token = base64.b64encode(f"\0{user}\0wrong password".encode()).decode()
        t0 = time.perf_counter()
        code, _ = c.docmd("AUTH", "PLAIN " + token)
        took = time.perf_counter() - t0
        c.close()
        assert code == 535, code
        return took
    unknown, known = [], []
    for _ in range(a.rounds):
        unknown.append(attempt("nobody@example.com"))
        known.append(attempt("taro@example.com"))
    server.terminate(); server.wait()
    subprocess.run(["rm", "-rf", work])
    mu, mk = statistics.median(unknown) * 1000, statistics.median(known) * 1000
    print(f"unknown account: median {mu:.1f} ms (min {min(unknown)*1000:.1f}, max {max(unknown)*1000:.1f})")
    print(f"wrong password:  median {mk:.1f} ms (min {min(known)*1000:.1f}, max {max(known)*1000:.1f})")
    print(f"difference of medians: {mk - mu:+.1f} ms over {a.rounds} rounds each")

sys.exit(main())
