"""Who may do what on geoverdict's topics: the Kafka ACLs of the secure profile.

Two roles besides the administrator. The consumer (user `geoverdict`) reads the image topic and
its group, and writes verdicts and dead letters: it cannot publish images or read verdicts.
A client (user `client`: the platform publishing posts and reading verdicts) writes images and
reads verdicts: it cannot read the dead letters (which may hold images) or join the group.
docker-compose.secure.yml grants the same with kafka-acls.sh (a test compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
)

CONSUMER_USER = "geoverdict"
CLIENT_USER = "client"
ADMIN_USER = "admin"


@dataclass(frozen=True)
class Grant:
    """One permission: `principal` may do `operation` on a topic or a group."""

    principal: str  # a user name
    operation: str  # READ, WRITE, DESCRIBE
    resource: str  # "topic" or "group"
    name: str


def grants(input_topic: str, verdict_topic: str, dead_letter_topic: str, group: str) -> list[Grant]:
    """The permissions of the consumer and of a client for one set of topics and a group."""
    consumer = [
        Grant(CONSUMER_USER, op, "topic", input_topic) for op in ("READ", "DESCRIBE")
    ] + [
        Grant(CONSUMER_USER, op, "topic", topic)
        for topic in (verdict_topic, dead_letter_topic)
        for op in ("WRITE", "DESCRIBE")
    ]  # fmt: skip
    consumer.append(Grant(CONSUMER_USER, "READ", "group", group))
    client = [Grant(CLIENT_USER, op, "topic", input_topic) for op in ("WRITE", "DESCRIBE")]
    client += [Grant(CLIENT_USER, op, "topic", verdict_topic) for op in ("READ", "DESCRIBE")]
    return consumer + client


def apply(bootstrap_servers: str, wanted: list[Grant]) -> None:
    """Create the ACLs through a listener whose principal may (the local stack's plaintext
    listener: its ANONYMOUS user is a super user there, for development only)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="geoverdict-acls")
    try:
        result = admin.create_acls([_acl(grant) for grant in wanted])
        if result["failed"]:
            raise RuntimeError(f"creating Kafka ACLs failed: {result['failed'][:3]}")
    finally:
        admin.close()


def _acl(grant: Grant) -> ACL:
    resource_type = ResourceType.TOPIC if grant.resource == "topic" else ResourceType.GROUP
    return ACL(
        principal=f"User:{grant.principal}",
        host="*",
        operation=getattr(ACLOperation, grant.operation),
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(resource_type, grant.name, ACLResourcePatternType.LITERAL),
    )
