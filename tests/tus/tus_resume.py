"""A real tus client (tuspy) uploads through strata, is interrupted, resumes.

Usage: tus_resume.py BASE_URL TOKEN CA_CERT SOURCE_FILE DRIVE_PATH

1. tuspy creates the upload and sends three 1 MiB chunks (sha1 checksums),
   then the uploader object is thrown away, as when a client process dies.
2. A PATCH whose connection drops mid-body (raw TLS socket: declares 2 MiB,
   sends 700 KiB, closes). The server keeps what arrived.
3. A brand-new tuspy uploader resumes from the offset HEAD reports and
   finishes the upload.
Prints the offsets it saw; the Rust test checks them and the content.
"""
import os
import socket
import ssl
import sys
import time
from urllib.parse import urlparse

base, token, ca, src, drive_path = sys.argv[1:6]
# tuspy verifies TLS through requests, which honours this bundle.
os.environ["REQUESTS_CA_BUNDLE"] = ca

from tusclient import client  # noqa: E402

MIB = 1 << 20
headers = {"Authorization": "Bearer " + token}

tus = client.TusClient(base + "/api/v1/uploads", headers=headers)
up = tus.uploader(src, chunk_size=MIB, metadata={"path": drive_path}, upload_checksum=True)
for _ in range(3):
    up.upload_chunk()
upload_url = up.url
print("after_chunks", up.offset, flush=True)
del up

# The connection drops in the middle of a request body.
u = urlparse(base)
ctx = ssl.create_default_context(cafile=ca)
raw = socket.create_connection((u.hostname, u.port))
tls = ctx.wrap_socket(raw, server_hostname=u.hostname)
path = urlparse(upload_url).path
with open(src, "rb") as f:
    f.seek(3 * MIB)
    partial = f.read(700 * 1024)
head = (
    f"PATCH {path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {token}\r\n"
    f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {3 * MIB}\r\n"
    f"Content-Type: application/offset+octet-stream\r\nContent-Length: {2 * MIB}\r\n\r\n"
).encode()
tls.sendall(head + partial)
time.sleep(0.5)
tls.close()

# A fresh client resumes from HEAD.
tus2 = client.TusClient(base + "/api/v1/uploads", headers=headers)
up2 = tus2.uploader(src, url=upload_url, chunk_size=MIB, upload_checksum=True)
print("resumed_at", up2.offset, flush=True)
up2.upload()
print("final", up2.offset, os.path.getsize(src), flush=True)
