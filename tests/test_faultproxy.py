"""The fault proxy itself: transparent by default, each fault does what it says."""

from __future__ import annotations

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from faultproxy import FaultProxy
from servers import REGION


def client_via(proxy: FaultProxy, s3_server, **config):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=proxy.url,
        region_name=REGION,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}, **config),
    )


def test_transparent_round_trip_keeps_signatures_valid(s3_server, bucket) -> None:
    with FaultProxy(s3_server.port) as proxy:
        c = client_via(proxy, s3_server)
        c.put_object(Bucket=bucket, Key="k", Body=b"x" * 3_000_000)
        assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x" * 3_000_000
        assert c.head_object(Bucket=bucket, Key="k")["ContentLength"] == 3_000_000
        assert ("PUT", f"/{bucket}/k", "") in proxy.requests


def test_error_rule_fires_its_times_then_traffic_flows(s3_server, bucket) -> None:
    with FaultProxy(s3_server.port) as proxy:
        rule = proxy.add_rule("error", method="PUT", status=503, code="SlowDown", times=1)
        c = client_via(proxy, s3_server)
        with pytest.raises(ClientError, match="SlowDown"):
            c.put_object(Bucket=bucket, Key="k", Body=b"abc")
        c.put_object(Bucket=bucket, Key="k", Body=b"abc")
        assert rule.hits == 1


def test_reset_rule_drops_the_connection(s3_server, bucket) -> None:
    with FaultProxy(s3_server.port) as proxy:
        proxy.add_rule("reset", method="GET")
        c = client_via(proxy, s3_server)
        c.put_object(Bucket=bucket, Key="k", Body=b"abc")
        with pytest.raises((ConnectionClosedError, EndpointConnectionError, Exception)) as info:
            c.get_object(Bucket=bucket, Key="k")["Body"].read()
        assert not isinstance(info.value, ClientError)


def test_corrupt_rule_changes_what_the_server_receives(s3_server, bucket, s3) -> None:
    with FaultProxy(s3_server.port) as proxy:
        proxy.add_rule("corrupt", method="PUT")
        c = client_via(proxy, s3_server, request_checksum_calculation="when_required")
        body = bytes(range(256)) * 16
        try:
            c.put_object(Bucket=bucket, Key="k", Body=body)
        except ClientError:
            return  # the store noticed (a checksum header): corruption reached it
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() != body
