"""What each command may do on Kafka, and a check that names what an ACL does not allow.

:func:`required` is the least-privilege table: for each command (the worker,
``replay``, ``taxii``, ``produce``, ``tail``, ``status``, ``topics create``)
the operations it needs on which topics and consumer groups, for given
settings. docs/kafka.md prints it as ``kafka-acls`` lines (:func:`kafka_acls`;
a unit test keeps the two equal) and an integration test on Apache Kafka
grants exactly those lines and runs every command.

:func:`check_access` asks the broker, before a command starts work, which
operations it is allowed on each of its topics (Metadata v8's
``topic_authorized_operations``) and groups (DescribeGroups v3's
``authorized_operations``), and raises :class:`~pipeline.errors.KafkaAccessDenied`
naming each missing operation and resource. Without it a denied group join
or fetch leaves faust logging and waiting, and a denied produce surfaces as
an error that names neither. A broker that cannot say (no authorizer
answers, or an older protocol) is not checked.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Literal

from aiokafka.errors import (CoordinatorLoadInProgressError, GroupAuthorizationFailedError,
                             GroupCoordinatorNotAvailableError, KafkaError)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Bytes, Int16, Int32, Schema, String

from topics import (DEAD, ENRICHED, LOOKUPS, POLLS, QUOTA, RAW, REPLAY, REPLAY_RUNS, REPLAY_SIGHTINGS, REQUESTS,
                    RESPONSES, RETRY_PREFIX, SIGHTINGS, STIX, VERDICT_TABLE, TopicSpec, changelog_name, intake_group,
                    replay_group)

from pipeline.errors import KafkaAccessDenied
from pipeline.settings import Settings

log = logging.getLogger("vtstream.kafka.acls")

Resource = Literal["topic", "group", "cluster"]
#: Kafka's AclOperation codes, as the authorized-operations bit fields number them.
OPERATIONS = {"Read": 3, "Write": 4, "Create": 5, "Delete": 6, "Alter": 7, "Describe": 8,
              "DescribeConfigs": 10}
#: Commands in the order docs/kafka.md lists them.
COMMANDS = ("worker", "replay", "taxii", "produce", "tail", "status", "topics create")
#: "The broker did not compute authorized operations" (Kafka's Integer.MIN_VALUE).
NOT_PROVIDED = -(2 ** 31)
TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED = 29, 30


@dataclass(frozen=True)
class Need:
    """Operations a command needs on one resource (a prefixed name covers every name that starts with it)."""

    resource: Resource
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False

    def covers(self, name: str) -> bool:
        return name.startswith(self.name) if self.prefixed else name == self.name


def required(command: str, settings: Settings, *, topic: str | None = None, run: str | None = None) -> list[Need]:
    """The ACLs ``command`` needs with ``settings``; ``topic``: produce's, tail's or replay's ``--topic``,
    ``run``: replay's ``--run`` (without it, every run: a prefixed group)."""
    app = settings.app_id
    changelog = changelog_name(app)
    if command == "worker":
        # the verdict memory and its sighting counts, unless VTSTREAM_VERDICT_CHANGES=false
        verdicts = (SIGHTINGS, changelog_name(app, VERDICT_TABLE)) if settings.outputs.verdict_changes else ()
        return [Need("topic", name, ("Read", "Write")) for name in
                (LOOKUPS, REQUESTS, REPLAY, POLLS, RESPONSES, QUOTA, changelog, *verdicts)] + [
            Need("topic", RETRY_PREFIX, ("Read", "Write"), prefixed=True),
            Need("topic", RAW, ("Read",)),
            *(Need("topic", name, ("Write",)) for name in (ENRICHED, STIX, DEAD)),
            Need("group", app, ("Read",)), Need("group", intake_group(app), ("Read",))]
    if command == "replay":
        group = Need("group", replay_group(app, run), ("Read",)) if run else Need(
            "group", replay_group(app, ""), ("Read",), prefixed=True)
        return [Need("topic", topic or RAW, ("Read",)), group,
                *(Need("topic", name, ("Read", "Write")) for name in (REPLAY_RUNS, REPLAY_SIGHTINGS, ENRICHED)),
                *(Need("topic", name, ("Read",)) for name in (RESPONSES, changelog)),
                *(Need("topic", name, ("Write",)) for name in (LOOKUPS, DEAD))]
    if command == "taxii":
        return [Need("topic", STIX, ("Read",))]
    if command == "produce":
        return [Need("topic", topic or RAW, ("Write",))]
    if command == "tail":
        return [Need("topic", topic or ENRICHED, ("Read",))]
    if command == "status":
        return [*(Need("topic", name, ("Read",)) for name in (QUOTA, REPLAY_RUNS, DEAD, RAW, LOOKUPS, REQUESTS,
                                                                REPLAY, POLLS, RESPONSES)),
                Need("topic", RETRY_PREFIX, ("Read",), prefixed=True),
                Need("group", app, ("Describe",)), Need("group", intake_group(app), ("Describe",))]
    if command == "topics create":
        return [Need("cluster", "kafka-cluster", ("Create",))]
    raise ValueError(f"unknown command {command!r}")


def used_topics(specs: Iterable[TopicSpec], needs: Iterable[Need]) -> list[TopicSpec]:
    """The catalog topics among ``needs``: what a command makes sure exists (and may not see otherwise)."""
    topic_needs = [need for need in needs if need.resource == "topic"]
    return [spec for spec in specs if any(need.covers(spec.name) for need in topic_needs)]


def kafka_acls(command: str, principal: str, settings: Settings | None = None,
               bootstrap: str = "kafka1:9093", config: str = "admin.properties") -> list[str]:
    """``kafka-acls`` lines that grant ``principal`` (``User:...``) what ``command`` needs: one line per
    operation set and name pattern, as docs/kafka.md prints them.

    >>> kafka_acls("produce", "User:siem")[0].split(" --add ")[1]
    '--allow-principal User:siem --operation Write --topic indicators.raw'
    """
    groups: dict[tuple[tuple[str, ...], bool], list[Need]] = {}
    for need in required(command, settings or Settings()):
        groups.setdefault((need.operations, need.prefixed), []).append(need)
    lines = []
    for (operations, prefixed), needs in groups.items():
        parts = [f"kafka-acls --bootstrap-server {bootstrap} --command-config {config} --add",
                 f"--allow-principal {principal}", *(f"--operation {op}" for op in operations)]
        if prefixed:
            parts.append("--resource-pattern-type prefixed")
        parts += ["--cluster" if n.resource == "cluster" else f"--{n.resource} {n.name}" for n in needs]
        lines.append(" ".join(parts))
    return lines


# ------------------------------------------------------------------ asking the broker

class _MetadataResponseV8(Response):
    API_KEY, API_VERSION = 3, 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", Array(("node_id", Int32), ("host", String("utf-8")), ("port", Int32), ("rack", String("utf-8")))),
        ("cluster_id", String("utf-8")), ("controller_id", Int32),
        ("topics", Array(("error_code", Int16), ("topic", String("utf-8")), ("is_internal", Boolean),
                         ("partitions", Array(("error_code", Int16), ("partition", Int32), ("leader", Int32),
                                              ("leader_epoch", Int32), ("replicas", Array(Int32)),
                                              ("isr", Array(Int32)), ("offline_replicas", Array(Int32)))),
                         ("authorized_operations", Int32))),
        ("cluster_authorized_operations", Int32))


class _MetadataRequestV8(RequestStruct):
    API_KEY, API_VERSION, RESPONSE_TYPE = 3, 8, _MetadataResponseV8
    # topics: an array of {name}; on the wire the same as an array of names
    SCHEMA = Schema(("topics", Array(String("utf-8"))), ("allow_auto_topic_creation", Boolean),
                    ("include_cluster_authorized_operations", Boolean),
                    ("include_topic_authorized_operations", Boolean))


class _AuthorizedTopics(Request[_MetadataRequestV8]):
    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def build(self, request_struct_class: type[_MetadataRequestV8]) -> _MetadataRequestV8:
        return request_struct_class(self.topics, False, False, True)


class _DescribeGroupsResponseV3(Response):  # aiokafka's v3 request expects the v2 answer, without the field
    API_KEY, API_VERSION = 15, 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("groups", Array(("error_code", Int16), ("group", String("utf-8")), ("state", String("utf-8")),
                         ("protocol_type", String("utf-8")), ("protocol", String("utf-8")),
                         ("members", Array(("member_id", String("utf-8")), ("client_id", String("utf-8")),
                                           ("client_host", String("utf-8")), ("member_metadata", Bytes),
                                           ("member_assignment", Bytes))),
                         ("authorized_operations", Int32))))


class _DescribeGroupsRequestV3(RequestStruct):
    API_KEY, API_VERSION, RESPONSE_TYPE = 15, 3, _DescribeGroupsResponseV3
    SCHEMA = Schema(("groups", Array(String("utf-8"))), ("include_authorized_operations", Boolean))


class _AuthorizedGroups(Request[_DescribeGroupsRequestV3]):
    API_KEY = 15

    def __init__(self, groups: list[str]) -> None:
        self.groups = groups

    def build(self, request_struct_class: type[_DescribeGroupsRequestV3]) -> _DescribeGroupsRequestV3:
        return request_struct_class(self.groups, True)


def _missing(need: Need, name: str, error: int, allowed: int, denied: int) -> list[str]:
    """What of ``need`` the answer for ``name`` does not allow, spelled for the error line: 'Read, Write on topic x'."""
    if error == denied:
        operations = list(need.operations)
    elif error or allowed == NOT_PROVIDED:
        return []  # missing (the command creates or reports it), or the broker did not say
    else:
        operations = [op for op in need.operations if not allowed & (1 << OPERATIONS[op])]
    return [f"{', '.join(operations)} on {need.resource} {name}"] if operations else []


async def check_access(settings: Settings, command: str, needs: Iterable[Need] | None = None) -> None:
    """Raise KafkaAccessDenied naming every operation ``command`` needs and the broker's ACLs deny.

    Prefixed needs are checked on the topics that exist under the prefix.
    """
    from pipeline.kafka.admin import make_admin, start_with_retry

    needs = list(needs if needs is not None else required(command, settings))
    admin = make_admin(settings)
    await start_with_retry(admin, settings)
    missing: list[str] = []
    try:
        client: Any = admin._client
        topic_needs = [n for n in needs if n.resource == "topic"]
        if topic_needs:
            names = {t for t in await admin.list_topics() for n in topic_needs if n.prefixed and n.covers(t)}
            names |= {n.name for n in topic_needs if not n.prefixed}
            node = client.get_random_node()
            answer = await client.send(node, _AuthorizedTopics(sorted(names)))
            for error, name, *_rest, allowed in answer.topics:
                for need in (n for n in topic_needs if n.covers(name)):
                    missing += _missing(need, name, error, allowed, TOPIC_AUTHORIZATION_FAILED)
        for need in (n for n in needs if n.resource == "group" and not n.prefixed):
            try:
                coordinator = await _coordinator(admin, need.name)
            except GroupAuthorizationFailedError:
                missing += _missing(need, need.name, GROUP_AUTHORIZATION_FAILED, 0, GROUP_AUTHORIZATION_FAILED)
                continue
            answer = await client.send(coordinator, _AuthorizedGroups([need.name]))
            for error, name, *_rest, allowed in answer.groups:
                missing += _missing(need, name, error, allowed, GROUP_AUTHORIZATION_FAILED)
    except (NotImplementedError, KeyError, KafkaError) as exc:  # an older broker (or the embedded one) cannot say
        log.debug("authorized operations not available (%r): not checked", exc)
    finally:
        await admin.close()
    if missing:
        raise KafkaAccessDenied(
            f"Kafka at {settings.kafka.bootstrap} does not allow {command} {'; '.join(missing)}"
            f"{_principal(settings)}; grant the ACLs docs/kafka.md lists for {command}")


async def _coordinator(admin: Any, group: str, attempts: int = 40) -> int:
    """The group's coordinator; a cluster whose offsets topic is still being created is waited for."""
    for _ in range(attempts - 1):
        try:
            return int(await admin.find_coordinator(group))
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            await asyncio.sleep(0.25)
    return int(await admin.find_coordinator(group))


def _principal(settings: Settings) -> str:
    if settings.kafka.security_protocol.startswith("SASL_"):
        return f" (user {settings.kafka.sasl_username!r})"
    if settings.kafka.ssl_certfile is not None:
        return " (the client certificate's principal)"
    return ""
