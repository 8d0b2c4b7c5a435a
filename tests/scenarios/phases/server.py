"""The probe-phase scenario's pod: one HTTP-ish server per port, each
failing a probe in one way after the handshake (see env.sh). Run inside
the pod's network namespace; stdlib only."""
import socket
import struct
import sys
import threading
import time

POD_IP = sys.argv[1]
HEALTHY, SILENT, ERROR, LATE, RESET, CLOSE, LOOPBACK, RPFILTER, BACKLOG = (int(p) for p in sys.argv[2:11])


def reply(status, reason):
    body = reason.encode()
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def handle(port, conn):
    held = []
    try:
        read_request(conn)
        if port in (HEALTHY, LOOPBACK):
            conn.sendall(reply(200, "OK"))
        elif port == ERROR:
            conn.sendall(reply(500, "Internal Server Error"))
        elif port == LATE:
            time.sleep(0.6)
            conn.sendall(reply(200, "OK"))
        elif port == SILENT:
            held.append(conn)
            time.sleep(30)
        elif port == RESET:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # CLOSE: nothing to write.
    finally:
        conn.close()


def serve(addr, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(port, conn), daemon=True).start()


def never_accepting(addr, port):
    """A listener with backlog 1 that never accepts, and a connection that
    already waits in its queue (the kernel queues backlog + 1)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    waiting = socket.create_connection((addr, port))
    return s, waiting


for port in (HEALTHY, SILENT, ERROR, LATE, RESET, CLOSE, RPFILTER):
    threading.Thread(target=serve, args=(POD_IP, port), daemon=True).start()
threading.Thread(target=serve, args=("127.0.0.1", LOOPBACK), daemon=True).start()
held = never_accepting(POD_IP, BACKLOG)
print("ready", flush=True)
threading.Event().wait()
