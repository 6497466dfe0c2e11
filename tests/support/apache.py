"""Apache Kafka in the tests: the principals, an admin over the ADMIN listener, emptying a shared broker, ACLs.

The admin is confluent-kafka's (librdkafka), an off-the-shelf client: aiokafka
has no ACL API. The ACL lines are parsed from docs/kafka.md, exactly as a
reader copies them, so the tests grant what the documentation says.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path
from typing import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ConfigResource, ResourcePatternType, ResourceType)

from pipeline.devtools.apache.launcher import ApacheKafka

DOCS = Path(__file__).resolve().parents[2] / "docs" / "kafka.md"

#: The principal each command runs as in docs/kafka.md's ACL table (SCRAM users on the test broker).
PRINCIPALS = {"worker": "vtstream", "replay": "vtstream-replay", "taxii": "vtstream-taxii", "produce": "siem",
              "tail": "soc-analyst", "status": "vtstream-ops", "topics create": "vtstream-setup"}
#: SCRAM users of the session's broker: every principal above (passwords: the launcher makes them).
USERS = {name: f"{name}-{i}-pw" for i, name in enumerate(PRINCIPALS.values())}


def admin(kafka: ApacheKafka) -> AdminClient:
    """An admin client on the ADMIN listener (a super user)."""
    return AdminClient({"bootstrap.servers": kafka.bootstrap})


def _wait(futures: dict, what: str) -> None:
    for key, future in futures.items():
        try:
            future.result(30)
        except KafkaException as exc:
            raise AssertionError(f"{what} {key}: {exc}") from None


def reset(kafka: ApacheKafka) -> None:
    """Empty the broker for the next test: no topics (but Kafka's own), consumer groups or ACLs left."""
    client = admin(kafka)
    topics = [t for t in client.list_topics(timeout=30).topics if not t.startswith("__")]
    if topics:
        _wait(client.delete_topics(topics, operation_timeout=30), "delete topic")
    groups = [g.group_id for g in client.list_consumer_groups().result(30).valid]
    if groups:
        for future in client.delete_consumer_groups(groups, request_timeout=30).values():
            try:
                future.result(30)
            except KafkaException:
                pass  # a group still settling its members' leave; it holds no offsets of deleted topics
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    client.delete_acls([everything])[everything].result(30)
    deadline = time.monotonic() + 30
    while any(not t.startswith("__") for t in client.list_topics(timeout=30).topics):
        assert time.monotonic() < deadline, "topics not deleted within 30 s"
        time.sleep(0.1)


def topic_settings(kafka: str, *topics: str) -> dict[str, tuple[int, dict[str, str]]]:
    """Each topic's replication factor and configuration, as Apache Kafka describes them."""
    admin = AdminClient({"bootstrap.servers": kafka})
    metadata = admin.list_topics(timeout=30).topics
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in topics]
    configs = {resource.name: future.result(30) for resource, future in admin.describe_configs(resources).items()}
    described = {}
    for topic in topics:
        replicas = {len(p.replicas) for p in metadata[topic].partitions.values()}
        assert len(replicas) == 1, (topic, replicas)
        described[topic] = (replicas.pop(), {name: entry.value for name, entry in configs[topic].items()})
    return described


# --------------------------------------------------------------------------- ACL lines from the docs

def acl_lines(command: str) -> list[str]:
    """The ``kafka-acls`` lines docs/kafka.md gives for ``command`` (its ``# <command>`` block)."""
    text = DOCS.read_text()
    match = re.search(rf"^# {re.escape(command)}\n((?:kafka-acls .*\n)+)", text, flags=re.M)
    assert match, f"docs/kafka.md has no '# {command}' block of kafka-acls lines"
    return match.group(1).splitlines()


_OPERATIONS = {op.name.replace("_", "").lower(): op for op in AclOperation}
_RESOURCES = {"--topic": ResourceType.TOPIC, "--group": ResourceType.GROUP, "--cluster": ResourceType.BROKER}


def bindings(line: str) -> list[AclBinding]:
    """The ACL bindings one ``kafka-acls --add`` line creates.

    Understands the flags docs/kafka.md uses: --allow-principal, --operation
    (repeatable), --topic / --group (repeatable), --cluster and
    --resource-pattern-type literal|prefixed; anything else fails the test.
    """
    args = shlex.split(line)
    assert args[0] == "kafka-acls", line
    who, operations, resources, pattern = None, [], [], ResourcePatternType.LITERAL
    i = 1
    while i < len(args):
        flag = args[i]
        if flag in ("--bootstrap-server", "--command-config"):
            i += 2
            continue
        if flag == "--add":
            i += 1
        elif flag == "--allow-principal":
            who, i = args[i + 1], i + 2
        elif flag == "--operation":
            operations.append(_OPERATIONS[args[i + 1].lower()])
            i += 2
        elif flag in ("--topic", "--group"):
            resources.append((_RESOURCES[flag], args[i + 1]))
            i += 2
        elif flag == "--cluster":
            resources.append((ResourceType.BROKER, "kafka-cluster"))
            i += 1
        elif flag == "--resource-pattern-type":
            pattern = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}[args[i + 1]]
            i += 2
        else:
            raise AssertionError(f"unexpected flag {flag!r} in {line!r}")
    assert who and operations and resources, line
    return [AclBinding(kind, name, pattern, who, "*", op, AclPermissionType.ALLOW)
            for kind, name in resources for op in operations]


def grant(kafka: ApacheKafka, lines: Iterable[str]) -> list[AclBinding]:
    """Create the ACLs of ``lines``; the bindings made."""
    made = [b for line in lines for b in bindings(line)]
    client = admin(kafka)
    for future in client.create_acls(made).values():
        future.result(30)
    return made


def revoke(kafka: ApacheKafka, binding: AclBinding) -> None:
    """Delete one ACL binding."""
    match = AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type, binding.principal,
                             binding.host, binding.operation, binding.permission_type)
    client = admin(kafka)  # kept: a client collected before its future resolves cancels it
    client.delete_acls([match])[match].result(30)
