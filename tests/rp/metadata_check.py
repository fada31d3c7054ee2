#!/usr/bin/env python3
"""Checks a gateway's discovery documents with authlib, as a relying party would.

Usage: metadata_check.py URL

URL is the gateway's base address (http://127.0.0.1:8080) or the full
address of a metadata document. Both documents are fetched from the base:
/.well-known/openid-configuration through
authlib.oidc.discovery.OpenIDProviderMetadata(doc).validate(), and
/.well-known/oauth-authorization-server through
authlib.oauth2.rfc8414.AuthorizationServerMetadata(doc).validate().
Each document's issuer must be the one the other states. Exits 0 when both
validate, 1 when one does not, 2 on a usage or fetch error.

authlib requires an https issuer except on loopback (http://127.0.0.1:...,
http://localhost:...): a gateway with another plain-http TESSERA_ISSUER fails.
"""

import sys

import requests
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata

OPENID = "/.well-known/openid-configuration"
OAUTH = "/.well-known/oauth-authorization-server"


def fetch(url):
    res = requests.get(url, timeout=10)
    if res.status_code != 200:
        raise RuntimeError(f"GET {url}: HTTP {res.status_code}")
    if not res.headers.get("content-type", "").startswith("application/json"):
        raise RuntimeError(f"GET {url}: content type {res.headers.get('content-type')!r}")
    return res.json()


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    base = argv[1].rstrip("/")
    for suffix in (OPENID, OAUTH):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    try:
        openid = fetch(base + OPENID)
        oauth = fetch(base + OAUTH)
    except (requests.RequestException, RuntimeError, ValueError) as e:
        print(f"fetch failed: {e}", file=sys.stderr)
        return 2
    failed = False
    for name, cls, doc in (
        ("OpenIDProviderMetadata", OpenIDProviderMetadata, openid),
        ("AuthorizationServerMetadata", AuthorizationServerMetadata, oauth),
    ):
        try:
            cls(doc).validate()
            print(f"ok   {name}")
        except ValueError as e:
            print(f"FAIL {name}: {e}", file=sys.stderr)
            failed = True
    if openid.get("issuer") != oauth.get("issuer"):
        print(f"FAIL issuers differ: {openid.get('issuer')!r} {oauth.get('issuer')!r}", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
