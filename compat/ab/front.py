"""The nginx front of an A/B deployment, as configuration text from plain values (no I/O): a weighted split per
request or sticky per client, an optional mirror to the other arm, X-Drum-Stack on every answer."""
from __future__ import annotations

from dataclasses import dataclass

ARMS = ("gunicorn", "fastapi")  # the server types of the two arms; also their nginx upstream names
ARM_HEADER = "X-Drum-Stack"
ARM_METRICS = "/_drum_compat/arms/{arm}/metrics"  # each arm's /metrics through the front, for loopback callers only
MIRROR_HEADER = "X-Drum-Mirror"  # on the copy a mirror sends, so the other arm's logs tell copies apart


@dataclass(frozen=True)
class FrontPlan:
    listen: str  # host:port, as --address gives it
    arm_ports: dict  # server type -> the arm's loopback port
    fastapi_weight: float  # percent of requests (or clients, when sticky) the fastapi arm answers
    sticky: bool = False
    mirror: bool = False
    directory: str = "."  # nginx's prefix: its pid file and temp paths


def split(plan: FrontPlan) -> str:
    key = "${remote_addr}" if plan.sticky else "${request_id}"
    if plan.fastapi_weight <= 0:
        arms = "* gunicorn;"
    elif plan.fastapi_weight >= 100:
        arms = "* fastapi;"
    else:
        arms = f"{plan.fastapi_weight:g}% fastapi; * gunicorn;"
    return f'split_clients "{key}" $drum_arm {{ {arms} }}'


def listen_directive(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"listen {host or '0.0.0.0'}:{port};" if host else f"listen {address};"


def nginx_conf(plan: FrontPlan) -> str:
    directory = plan.directory.rstrip("/")
    upstreams = "\n".join(f"    upstream {arm} {{ server 127.0.0.1:{plan.arm_ports[arm]}; keepalive 64; }}" for arm in ARMS)
    mirror = ""
    mirror_location = ""
    if plan.mirror:
        mirror = "            mirror /_drum_compat/mirror;\n            mirror_request_body on;\n"
        mirror_location = f"""
        location = /_drum_compat/mirror {{
            internal;
            proxy_pass http://$drum_shadow$request_uri;
            proxy_set_header Host $http_host;
            proxy_set_header Connection "";
            proxy_set_header {MIRROR_HEADER} 1;
        }}"""
    metrics = ARM_METRICS.format(arm="(gunicorn|fastapi)")
    return f"""# written by drum-compat ab; nginx runs in the foreground as a child of that command
worker_processes 1;
pid {directory}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;  # each arm writes its own access line, with its server_type
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    client_max_body_size 0;  # the arms' own body limit answers, in DRUM's format
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_read_timeout 3600s;  # the arms' own deadline answers first
    server_tokens off;
{upstreams}
    {split(plan)}
    map $drum_arm $drum_shadow {{ gunicorn fastapi; fastapi gunicorn; }}
    server {{
        {listen_directive(plan.listen)}
        location / {{
            proxy_pass http://$drum_arm;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Connection "";
            add_header {ARM_HEADER} $drum_arm always;
{mirror}        }}{mirror_location}
        location ~ ^{metrics}$ {{
            allow 127.0.0.1;
            allow ::1;
            deny all;
            proxy_pass http://$1/metrics;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
