#!/usr/bin/env python3
"""Records what real clients send: a TCP relay in front of PostgreSQL that writes seed corpora.

Usage: capture.py LISTEN_PORT SERVER_HOST:PORT OUT_DIR
Each client connection's bytes are split into the startup packet (startup_auth corpus), the
tagged frames after it (frame_decoder corpus, one file per frame and one per connection's
whole stream) and the SQL of Query/Parse messages (classifier corpus). Stop with Ctrl-C.
"""
import hashlib, os, socket, struct, sys, threading

def save(d, data):
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def split_client(stream, out):
    # Untagged packets first (SSLRequest, then StartupMessage); tagged frames after.
    pos = 0
    startup_done = False
    while not startup_done and pos + 8 <= len(stream):
        n = struct.unpack(">i", stream[pos:pos + 4])[0]
        code = struct.unpack(">i", stream[pos + 4:pos + 8])[0]
        save(os.path.join(out, "startup_auth"), stream[pos:pos + n])
        pos += n
        if code != 80877103:
            startup_done = True
    rest = stream[pos:]
    if rest:
        save(os.path.join(out, "frame_decoder"), rest[:65536])
    while pos + 5 <= len(stream):
        tag = stream[pos:pos + 1]
        n = struct.unpack(">i", stream[pos + 1:pos + 5])[0]
        frame = stream[pos:pos + 1 + n]
        save(os.path.join(out, "frame_decoder"), frame)
        body = frame[5:]
        if tag in (b"p",):
            save(os.path.join(out, "startup_auth"), frame)
        if tag == b"Q":
            save(os.path.join(out, "classifier"), body.rstrip(b"\0"))
        elif tag == b"P":
            parts = body.split(b"\0", 2)
            if len(parts) >= 2:
                save(os.path.join(out, "classifier"), parts[1])
        pos += 1 + n

def relay(client, server_addr, out):
    server = socket.create_connection(server_addr)
    seen = bytearray()
    def back():
        try:
            while True:
                b = server.recv(65536)
                if not b:
                    break
                client.sendall(b)
        except OSError:
            pass
        finally:
            try: client.shutdown(socket.SHUT_WR)
            except OSError: pass
    t = threading.Thread(target=back, daemon=True)
    t.start()
    try:
        while True:
            b = client.recv(65536)
            if not b:
                break
            seen += b
            server.sendall(b)
    except OSError:
        pass
    finally:
        try: server.shutdown(socket.SHUT_WR)
        except OSError: pass
    t.join(5)
    split_client(bytes(seen), out)
    client.close(); server.close()

def main():
    port, server, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    host, sport = server.rsplit(":", 1)
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port)); ls.listen(128)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=relay, args=(c, (host, int(sport)), out), daemon=True).start()

if __name__ == "__main__":
    main()
