#!/usr/bin/python3
# An independent DKIM verifier for the tests: Debian's python3-dkim (dkimpy), not mailauth,
# which signs. Reads a JSON list of base64 messages on stdin and the DNS TXT records as JSON
# in argv[1] ({"sel._domainkey.example": "v=DKIM1; k=rsa; p=..."}); prints, for each message,
# the result of each DKIM-Signature, top to bottom: [[{"d": "...", "pass": true}, ...], ...].
import base64
import json
import sys

import dkim

records = json.loads(sys.argv[1])


def dnsfunc(name, timeout=5):
    record = records.get(name.decode().rstrip("."))
    return record.encode() if record else None


def verify(message):
    verifier = dkim.DKIM(message)
    signatures = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"]
    results = []
    for i, sig in enumerate(signatures):
        tags = dkim.util.parse_tag_value(b"".join(sig.split()))
        try:
            ok = bool(verifier.verify(idx=i, dnsfunc=dnsfunc))
        except dkim.DKIMException:
            ok = False
        results.append({"d": tags.get(b"d", b"").decode(), "pass": ok})
    return results


print(json.dumps([verify(base64.b64decode(m)) for m in json.load(sys.stdin)]))
