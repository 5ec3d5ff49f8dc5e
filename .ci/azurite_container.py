#!/usr/bin/env python3
"""Creates a blob container in Azurite, signed with the emulator's well-known account key
(SharedKey auth, path-style URL), with the standard library only.

    python3 .ci/azurite_container.py [ENDPOINT [CONTAINER]]

ENDPOINT defaults to http://127.0.0.1:10000, CONTAINER to ocistore. Prints 201 when it created
the container, 409 when it existed already; exits non-zero on any other answer.
"""
import base64
import hashlib
import hmac
import sys
import urllib.error
import urllib.request
from email.utils import formatdate

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def create(endpoint, container):
    date = formatdate(usegmt=True)
    headers = {"x-ms-date": date, "x-ms-version": "2021-08-06", "Content-Length": "0"}
    canon_headers = "".join(
        f"{k}:{v}\n"
        for k, v in sorted((k.lower(), v) for k, v in headers.items())
        if k.startswith("x-ms-")
    )
    # Path-style URL: the account is in the path as well as in the canonical resource's prefix.
    canon_resource = f"/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"
    to_sign = "PUT\n\n\n\n\n\n\n\n\n\n\n\n" + canon_headers + canon_resource
    sig = base64.b64encode(
        hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{sig}"
    url = f"{endpoint.rstrip('/')}/{ACCOUNT}/{container}?restype=container"
    req = urllib.request.Request(url, method="PUT", headers=headers)
    try:
        # Straight to the emulator, whatever http_proxy says.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        if e.code == 409:  # exists
            return 409
        raise SystemExit(f"create container {container}: {e.code} {e.read()[:300]!r}")
    except urllib.error.URLError as e:
        raise SystemExit(f"create container {container}: {url}: {e.reason}")


if __name__ == "__main__":
    print(
        create(
            sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:10000",
            sys.argv[2] if len(sys.argv) > 2 else "ocistore",
        )
    )
