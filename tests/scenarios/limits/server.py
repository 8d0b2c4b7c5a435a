"""The container-limits scenario's server: answers a probe after ~20 ms
of CPU work (a health check that computes something), never (--stall),
or after sleeping (--delay SECONDS).
Run inside the pod's network namespace and its container's cgroup."""
import socket
import sys
import threading
import time

ADDR, PORT = sys.argv[1], int(sys.argv[2])
STALL = "--stall" in sys.argv
DELAY = float(sys.argv[sys.argv.index("--delay") + 1]) if "--delay" in sys.argv else 0.0


def work():
    end = time.process_time() + 0.02
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def handle(conn):
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        if STALL:
            time.sleep(60)
            return
        time.sleep(DELAY)
        work()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
    finally:
        conn.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ADDR, PORT))
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
