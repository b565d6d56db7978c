"""A torch-free TorchServe handler for the stack tests: answers each request with its size."""


def handle(data, context):
    if data is None:  # TorchServe's warm-up call
        return None
    replies = []
    for row in data:
        body = row.get("body") if row.get("body") is not None else row.get("data")
        size = len(body) if isinstance(body, (bytes, bytearray)) else len(str(body or ""))
        replies.append({"bytes": size, "batch": len(data)})
    return replies
