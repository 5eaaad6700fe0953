"""``ipmg dlq list|replay``: what could not be processed, and sending it back to its consumer.

Replay never re-publishes onto an event topic (that would put a second copy in the audited
record): it sends the original message to the failing consumer's own retry topic, which that
consumer also reads. Consumers are idempotent, so a replay of something already applied is
absorbed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.settings import Settings, get_settings

dlq_app = typer.Typer(help="The dead-letter topic.", no_args_is_help=True)
console = Console()


@dataclass(frozen=True)
class DeadLetterRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def consumer(self) -> str:
        return self.headers.get("x-ipmg-consumer", "")

    @property
    def reason(self) -> str:
        return self.headers.get("x-ipmg-reason", "")


async def dead_letters(settings: Settings) -> list[DeadLetterRecord]:
    found = []
    async for record in read_topic(settings, settings.topics.dead_letter):
        headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
        found.append(
            DeadLetterRecord(
                record.partition, record.offset, record.key, record.value or b"", headers
            )
        )
    return found


async def replay(settings: Settings, records: list[DeadLetterRecord]) -> int:
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(), acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for record in records:
            headers = [
                (name, value.encode())
                for name, value in record.headers.items()
                if not name.startswith("x-ipmg-")
            ]
            headers.append(("x-ipmg-replayed-from", f"{record.partition}:{record.offset}".encode()))
            await producer.send_and_wait(
                settings.topics.retry(record.consumer),
                value=record.value,
                key=record.key,
                headers=headers,
            )
    finally:
        await producer.stop()
    return len(records)


@dlq_app.command("list")
def list_dead_letters(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's")] = None,
) -> None:
    """List the dead-lettered messages with their consumer, reason and error."""
    from ipmg_shared.cli import run_async

    records = [
        record
        for record in run_async(dead_letters(get_settings()))
        if consumer is None or record.consumer == consumer
    ]
    table = Table("offset", "consumer", "reason", "type", "event id", "error")
    for record in records:
        table.add_row(
            f"{record.partition}:{record.offset}",
            record.consumer,
            record.reason,
            record.headers.get("type", ""),
            record.headers.get("event_id", ""),
            record.headers.get("x-ipmg-error", "")[:120],
        )
    console.print(table)
    console.print(f"{len(records)} dead-lettered message(s)")


@dlq_app.command("replay")
def replay_dead_letters(
    consumer: Annotated[str, typer.Option(help="Replay to this consumer")],
    from_offset: Annotated[int, typer.Option(help="Only messages at or after this offset")] = 0,
) -> None:
    """Send dead-lettered messages back to the consumer that could not process them."""
    from ipmg_shared.cli import CliError, run_async

    settings = get_settings()
    records = [
        record
        for record in run_async(dead_letters(settings))
        if record.consumer == consumer and record.offset >= from_offset
    ]
    if not records:
        raise CliError(f"no dead-lettered messages for consumer {consumer!r}")
    sent = run_async(replay(settings, records))
    console.print(
        f"{sent} message(s) sent back to {consumer} through {settings.topics.retry(consumer)}"
    )
