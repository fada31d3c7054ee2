-- POSTs the body in $BODY with the content type in $CTYPE.
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = os.getenv("CTYPE") or "application/json"
