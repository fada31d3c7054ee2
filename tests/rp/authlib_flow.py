"""A relying party that is not ours: authlib drives the whole OpenID
Connect code flow against a running Tessera, the way a third-party web
application would.

    python3 tests/rp/authlib_flow.py BASE_URL EMAIL PASSWORD

The browser part (showing the sign-in page, posting the form) is played by
`requests`, reading the page's own form; everything OAuth is authlib's:
the authorization URL with PKCE S256 and a nonce, the code exchange, the ID
token checked against the JWKS (signature, iss, aud, exp, nonce, at_hash),
userinfo, and the refresh grant. Exits non-zero on the first failure.
"""

import sys
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlparse

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from authlib.common.security import generate_token

REDIRECT = "http://127.0.0.1:53682/callback"


class Form(HTMLParser):
    """Collects the inputs of the page's form."""

    def __init__(self):
        super().__init__()
        self.fields = {}
        self.labels = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"]] = a.get("value", "")
        if tag == "label":
            self.labels.append(a.get("for"))


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def main():
    base, email, password = sys.argv[1], sys.argv[2], sys.argv[3]
    # Discovery itself is validated by tests/rp/metadata_check.py.
    meta = requests.get(f"{base}/.well-known/openid-configuration", timeout=10).json()

    client = OAuth2Session(
        client_id="tessera-cli",
        redirect_uri=REDIRECT,
        scope="openid email profile offline_access",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    verifier = generate_token(64)
    nonce = generate_token(20)
    url, state = client.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )

    browser = requests.Session()
    page = browser.get(url, allow_redirects=False, timeout=10)
    check(page.status_code == 200, "the authorize redirect shows the sign-in page")
    form = Form()
    form.feed(page.text)
    check("email" in form.labels and "password" in form.labels, "the page labels email and password")
    fields = dict(form.fields)
    fields["email"] = email
    fields["password"] = password
    origin = "{0.scheme}://{0.netloc}".format(urlparse(base))
    res = browser.post(
        f"{base}/oauth/authorize", data=fields, headers={"Origin": origin},
        allow_redirects=False, timeout=30,
    )
    check(res.status_code == 303, "posting the sign-in form redirects back to the client")
    location = res.headers["Location"]
    check(location.startswith(REDIRECT), "to the registered redirect URI")
    check(parse_qs(urlparse(location).query)["state"] == [state], "with the client's state")

    token = client.fetch_token(
        meta["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    check("access_token" in token and "id_token" in token and "refresh_token" in token,
          "the code and PKCE verifier give access, ID and refresh tokens")

    jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    claims = jwt.decode(
        token["id_token"], jwks, claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": meta["issuer"]}},
        claims_params={"nonce": nonce, "client_id": "tessera-cli", "access_token": token["access_token"]},
    )
    claims.validate(leeway=30)
    check(claims.header["alg"] == "RS256", "the ID token is RS256")
    check(claims["aud"] == "tessera-cli" and claims["nonce"] == nonce,
          "the ID token validates (signature, iss, aud, exp, nonce, at_hash)")
    for c in ("sid", "amr", "auth_time"):
        check(c in claims, f"the ID token carries {c}")

    info = client.get(meta["userinfo_endpoint"], timeout=10)
    check(info.status_code == 200 and info.json()["sub"] == claims["sub"], "userinfo answers for the same person")
    check(info.json().get("email") == email.lower(), "userinfo gives the email (email scope)")

    old_refresh = token["refresh_token"]
    new = client.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
    check(new["refresh_token"] != old_refresh and "access_token" in new, "the refresh grant rotates the refresh token")
    info = client.get(meta["userinfo_endpoint"], timeout=10)
    check(info.status_code == 200, "the refreshed access token works at userinfo")
    print("authlib flow: all checks passed")


if __name__ == "__main__":
    main()
