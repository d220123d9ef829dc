"""Sends one request to infergate signed by an official SDK signer, for the interop tests.

Reads a JSON object on stdin:
  signer   "core" (huaweicloudsdkcore Signer) or "apig" (apigateway-sdk-python Signer)
  method, base (http://host:port), path (raw, percent-encoded), query (list of [k, v])
  headers  dict, body (text), key, secret
  mutate   optional: "body" | "path" | "query" | "header" changes one byte after signing;
           "swap" sends another body, with the signed body's X-Sdk-Content-Sha256 added
           when the signer did not send one
Prints a JSON object: status, headers, body.
"""
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


def sign_core(spec):
    from huaweicloudsdkcore.auth.credentials import BasicCredentials  # noqa: F401  (import check)
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer

    class Cred:
        ak = spec["key"]
        sk = spec["secret"]

    host = spec["base"].split("://", 1)[1]
    request = SdkRequest(
        method=spec["method"],
        schema="http",
        host=host,
        resource_path=spec["path"],
        query_params=[tuple(p) for p in spec["query"]],
        header_params=dict(spec["headers"]),
        body=spec["body"].encode("utf-8") if spec["body"] else "",
    )
    signed = Signer(Cred()).sign(request)
    return signed.uri, dict(signed.header_params), spec["body"].encode("utf-8")


def sign_apig(spec):
    from apigateway_sdk_python import signer

    query = "&".join(
        urllib.parse.quote(k, safe="") + "=" + urllib.parse.quote(v, safe="") for k, v in spec["query"]
    )
    url = spec["base"] + spec["path"] + ("?" + query if query else "")
    request = signer.HttpRequest(spec["method"], url, dict(spec["headers"]), spec["body"])
    sig = signer.Signer()
    sig.Key = spec["key"]
    sig.Secret = spec["secret"]
    sig.Sign(request)
    canonical_query = signer.CanonicalQueryString(request)
    uri = spec["path"] + ("?" + canonical_query if canonical_query else "")
    return uri, dict(request.headers), request.body


def main():
    spec = json.load(sys.stdin)
    uri, headers, body = (sign_core if spec["signer"] == "core" else sign_apig)(spec)
    mutate = spec.get("mutate")
    if mutate == "body":
        body = body[:-2] + bytes([body[-2] ^ 1]) + body[-1:]
    elif mutate == "path":
        path, _, rest = uri.partition("?")
        uri = path + "x" + ("?" + rest if rest else "")
    elif mutate == "query":
        uri = uri + ("&" if "?" in uri else "?") + "extra=1"
    elif mutate == "swap":
        if not any(name.lower() == "x-sdk-content-sha256" for name in headers):
            headers["X-Sdk-Content-Sha256"] = hashlib.sha256(body).hexdigest()
        body = b'{"swapped":true}'
    elif mutate == "header":
        for name in list(headers):
            if name.lower() == "x-sdk-date":
                value = headers[name]
                headers[name] = value[:-2] + ("1" if value[-2] != "1" else "2") + "Z"
    for name in list(headers):
        if name.lower() in ("host", "content-length"):
            del headers[name]
    request = urllib.request.Request(
        spec["base"] + uri, data=body if body else None, method=spec["method"], headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, resp_headers, payload = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        status, resp_headers, payload = err.code, dict(err.headers), err.read()
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = payload.decode("utf-8", "replace")
    json.dump({"status": status, "headers": resp_headers, "body": parsed, "sent_headers": headers}, sys.stdout)


if __name__ == "__main__":
    main()
