"""Who may do what on geoverdict's topics: the Kafka ACLs of the secure profile.

Two roles besides the administrator. The consumer (user `geoverdict`) reads the image topic and
its group, and writes verdicts and dead letters, in transactions (exactly_once: the
transactional ids starting with its prefix, idempotent writes on the cluster): it cannot publish
images or read verdicts.
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
    operation: str  # READ, WRITE, DESCRIBE, IDEMPOTENT_WRITE
    resource: str  # "topic", "group", "transactional-id" or "cluster"
    name: str
    prefixed: bool = False  # the name is a prefix (transactional ids PREFIX-GROUP-TOPIC-N)


CLUSTER = "kafka-cluster"  # Kafka's one cluster resource


def grants(
    input_topic: str,
    verdict_topic: str,
    dead_letter_topic: str,
    group: str,
    transactional_prefix: str = "geoverdict",
) -> list[Grant]:
    """The permissions of the consumer and of a client for one set of topics and a group."""
    consumer = [Grant(CONSUMER_USER, op, "topic", input_topic) for op in ("READ", "DESCRIBE")] + [
        Grant(CONSUMER_USER, op, "topic", topic)
        for topic in (verdict_topic, dead_letter_topic)
        for op in ("WRITE", "DESCRIBE")
    ]
    consumer.append(Grant(CONSUMER_USER, "READ", "group", group))
    consumer += [
        Grant(CONSUMER_USER, op, "transactional-id", transactional_prefix, prefixed=True)
        for op in ("WRITE", "DESCRIBE")
    ]
    consumer.append(Grant(CONSUMER_USER, "IDEMPOTENT_WRITE", "cluster", CLUSTER))
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


RESOURCE_TYPES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional-id": ResourceType.TRANSACTIONAL_ID,
    "cluster": ResourceType.CLUSTER,
}


def _acl(grant: Grant) -> ACL:
    pattern = ACLResourcePatternType.PREFIXED if grant.prefixed else ACLResourcePatternType.LITERAL
    return ACL(
        principal=f"User:{grant.principal}",
        host="*",
        operation=getattr(ACLOperation, grant.operation),
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(RESOURCE_TYPES[grant.resource], grant.name, pattern),
    )
