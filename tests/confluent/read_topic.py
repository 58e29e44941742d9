"""Read a funnelhub topic with Confluent's official Python client.

Proves that Confluent's own deserializer, talking to our schema registry, reads what
funnelhub writes. Prints one JSON object per record (timestamps as epoch ms).

usage: read_topic.py --brokers B --registry URL --topic T --count N
"""
import argparse
import datetime
import json
import sys
import uuid

from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer


def plain(value):
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--brokers", required=True)
    p.add_argument("--registry", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()

    registry = SchemaRegistryClient({"url": args.registry})
    consumer = DeserializingConsumer({
        "bootstrap.servers": args.brokers,
        "group.id": f"confluent-python-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "key.deserializer": StringDeserializer("utf_8"),
        "value.deserializer": AvroDeserializer(registry),
    })
    consumer.subscribe([args.topic])
    seen = 0
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=args.timeout)
    while seen < args.count and datetime.datetime.now() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error():
            print(f"consumer error: {message.error()}", file=sys.stderr)
            continue
        print(json.dumps({"key": message.key(), "value": message.value()}, default=plain))
        seen += 1
    consumer.close()
    if seen < args.count:
        print(f"only {seen} of {args.count} records read", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
