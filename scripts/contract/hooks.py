"""schemathesis hooks for scripts/contract.sh: the import body is NDJSON, which schemathesis has no
serializer for. The contract describes it as a string (the lines); send its UTF-8 bytes."""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    if isinstance(value, str):
        return {"data": value.encode("utf-8", "surrogatepass")}
    # A negative case of another type: send its JSON text, which is one (bad) line.
    return {"data": json.dumps(value).encode("utf-8")}
