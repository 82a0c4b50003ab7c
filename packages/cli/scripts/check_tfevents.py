#!/usr/bin/env python3
"""Independent check of a TensorBoard event file written by stepwise.

Reads the TFRecord framing with crcmod's CRC-32C (masked as TensorFlow masks it) and parses every
record with Google's protobuf runtime against TensorFlow's `Event` / `Summary` messages (the
field numbers of tensorflow/core/util/event.proto and framework/summary.proto, declared here
through descriptors so neither TensorFlow nor protoc is needed). Prints one JSON object:
{"fileVersion": ..., "events": [{"step", "wallTime", "scalars": {tag: value}}]}.

Debian packages: python3-protobuf python3-crcmod. Exits 2 on any framing or CRC error.
"""
import json
import struct
import sys

import crcmod.predefined
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

crc32c = crcmod.predefined.mkCrcFun("crc-32c")


def masked(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def messages():
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="stepwise_check_event.proto", package="tensorflow")

    def field(msg, name, number, ftype, label=F.LABEL_OPTIONAL, type_name=None):
        f = msg.field.add(name=name, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name

    summary = fdp.message_type.add(name="Summary")
    value = summary.nested_type.add(name="Value")
    field(value, "node_name", 7, F.TYPE_STRING)
    field(value, "tag", 1, F.TYPE_STRING)
    field(value, "simple_value", 2, F.TYPE_FLOAT)
    field(summary, "value", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".tensorflow.Summary.Value")
    event = fdp.message_type.add(name="Event")
    field(event, "wall_time", 1, F.TYPE_DOUBLE)
    field(event, "step", 2, F.TYPE_INT64)
    field(event, "file_version", 3, F.TYPE_STRING)
    field(event, "summary", 5, F.TYPE_MESSAGE, type_name=".tensorflow.Summary")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName("tensorflow.Event")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def main(path: str) -> None:
    Event = messages()
    data = open(path, "rb").read()
    pos, events, version = 0, [], None
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        if masked(header) != len_crc:
            sys.exit(f"bad length CRC at byte {pos}")
        payload = data[pos + 12 : pos + 12 + length]
        (data_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        if len(payload) != length or masked(payload) != data_crc:
            sys.exit(f"bad data CRC at byte {pos}")
        pos += 16 + length
        ev = Event()
        ev.ParseFromString(payload)
        if ev.file_version:
            version = ev.file_version
            continue
        events.append(
            {
                "step": ev.step,
                "wallTime": ev.wall_time,
                "scalars": {v.tag: v.simple_value for v in ev.summary.value},
            }
        )
    print(json.dumps({"fileVersion": version, "events": events}))


if __name__ == "__main__":
    main(sys.argv[1])
