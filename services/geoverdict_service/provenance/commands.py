"""`geoverdict provenance erase`: forget an event's or a post's sightings in the near-duplicate
index (a takedown, a person's request); docs/privacy.md says what is stored and for how long."""

from __future__ import annotations

import argparse
import logging

from geoverdict_service.exceptions import ServiceError

USER_ERRORS: tuple[type[Exception], ...] = (ServiceError,)

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `provenance erase`."""
    provenance = subparsers.add_parser(
        "provenance", help="the near-duplicate index of photos seen (erase entries)"
    )
    actions = provenance.add_subparsers(dest="action", required=True, metavar="ACTION")
    erase = actions.add_parser(
        "erase",
        help="forget sightings: of events by id, or of a post by source and post id",
        description="Erases at once what the index keeps about the sighting: the event's link "
        "to its photo, its claim, its count; when it was the photo's first sighting, the whole "
        "photo (hashes, claims). Verdicts already published stay in the verdict topic.",
    )
    what = erase.add_mutually_exclusive_group(required=True)
    what.add_argument("--event", nargs="+", metavar="EVENT_ID", help="event ids")
    what.add_argument("--post", nargs=2, metavar=("SOURCE", "POST_ID"), help="one post")
    erase.add_argument(
        "--redis-url",
        help="the index's Redis, its user and password in it (GEOVERDICT_REDIS_URL)",
    )
    erase.set_defaults(func=_erase)


def _erase(args: argparse.Namespace) -> int:
    from geoverdict_service.provenance.index import NearDuplicateIndex  # noqa: PLC0415
    from geoverdict_service.settings import load_index_settings  # noqa: PLC0415

    redis_settings, provenance = load_index_settings(redis_url=args.redis_url)
    if redis_settings.redis_url is None:
        raise ServiceError("no Redis: set GEOVERDICT_REDIS_URL or pass --redis-url")
    index = NearDuplicateIndex.from_url(
        redis_settings.redis_url.get_secret_value(),
        provenance.index_settings(),
        redis_settings.redis_timeout_s,
    )
    try:
        if args.post:
            source, post_id = args.post
            erased = index.erase_post(source, post_id)
            print(f"post {post_id!r} of {source!r}: {erased} sighting(s) erased")
            return 0
        for event_id in args.event:
            erased = index.erase_event(event_id)
            print(f"event {event_id!r}: " + ("erased" if erased else "not in the index"))
        return 0
    finally:
        index.close()
