"""A telemetry batch the server refused for its content: drop the named reading (on demand)."""

import json


def drop_refused(node, records, refusal):
    """Drop only the reading the server named (sending those before it); else the batch.

    Returns the seq up to which the queue may be acknowledged, or None to retry later.
    """
    bad = _refused_index(refusal, len(records))
    if bad is None:
        node.rejected_records += len(records)
        node.log.error("telemetry_rejected", first=records[0][0], last=records[-1][0],
                       detail=repr(refusal)[:120])
        return records[-1][0]
    if bad > 0:
        try:
            top = node.uplink.post_telemetry(records[:bad])
        except Exception as e:  # noqa: the next round retries from the same place
            node.log.warn("upload_failed", error=repr(e)[:120])
            return None
        if top is None:
            return None
        node.queue.ack(top)
    node.rejected_records += 1
    node.log.error("telemetry_rejected", seq=records[bad][0], detail=repr(refusal)[:120])
    return records[bad][0]


def _refused_index(refusal, count):
    """Index of the reading a 422 names ({"detail": {"index": i, …}}), or None."""
    try:
        body = refusal.args[1]
        index = json.loads(body)["detail"]["index"]
    except (IndexError, ValueError, KeyError, TypeError):
        return None
    if isinstance(index, int) and 0 <= index < count:
        return index
    return None
