"""The lab WinRM server's SOAP side: WS-Man names, reading a request's headers, building answers.

Split from :mod:`fleet.lab.winrm_server` (which speaks HTTP and runs the shells); everything here
is text in, text out.
"""

from __future__ import annotations

import base64
import re
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDR = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
NS_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"

ACTION_CREATE = f"{NS_TRANSFER}/Create"
ACTION_DELETE = f"{NS_TRANSFER}/Delete"
ACTION_COMMAND = f"{NS_SHELL}/Command"
ACTION_RECEIVE = f"{NS_SHELL}/Receive"
ACTION_SIGNAL = f"{NS_SHELL}/Signal"
ACTION_SEND = f"{NS_SHELL}/Send"
STATE_DONE = f"{NS_SHELL}/CommandState/Done"
STATE_RUNNING = f"{NS_SHELL}/CommandState/Running"

# WinRM's "operation timed out" fault (0x80338029): the client retries Receive on it.
OPERATION_TIMEOUT_FAULT = 2150858793
# A generic fault code for the injected non-timeout fault (0x803381A6, "shell not found").
INJECTED_FAULT = 2150859174

DEFAULT_OPERATION_TIMEOUT_S = 20.0
DEFAULT_MAX_ENVELOPE = 512_000  # WinRM's MaxEnvelopeSizekb default is 500


# --- SOAP envelopes -------------------------------------------------------------------------


def header_text(env: ET.Element, ns: str, name: str) -> str:
    el = env.find(f"{{{NS_SOAP}}}Header/{{{ns}}}{name}")
    return (el.text or "").strip() if el is not None else ""


def shell_id(env: ET.Element) -> str | None:
    for el in env.iter(f"{{{NS_WSMAN}}}Selector"):
        if el.get("Name") == "ShellId":
            return (el.text or "").strip()
    return None


DURATION = re.compile(r"^PT(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


def operation_timeout_s(env: ET.Element) -> float:
    match = DURATION.match(header_text(env, NS_WSMAN, "OperationTimeout"))
    if not match or not any(match.groups()):
        return DEFAULT_OPERATION_TIMEOUT_S
    minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return minutes * 60 + seconds


def stream_room(env: ET.Element) -> int:
    """Raw output bytes that fit a Receive answer within the request's MaxEnvelopeSize
    (base64 grows them by 4/3; the envelope around them takes about 1 KiB)."""
    text = header_text(env, NS_WSMAN, "MaxEnvelopeSize")
    size = int(text) if text.isdigit() else DEFAULT_MAX_ENVELOPE
    return max(1024, (size - 2048) * 3 // 4)


def envelope(action: str, relates_to: str, body: str) -> bytes:
    text = (
        f'<s:Envelope xmlns:s="{NS_SOAP}" xmlns:a="{NS_ADDR}" xmlns:x="{NS_TRANSFER}" '
        f'xmlns:w="{NS_WSMAN}" xmlns:rsp="{NS_SHELL}" xmlns:f="{NS_FAULT}">'
        "<s:Header>"
        f"<a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        "</s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )
    return text.encode("utf-8")


def created_response(relates_to: str, shell_id: str) -> bytes:
    body = (
        "<x:ResourceCreated>"
        "<a:Address>http://localhost/wsman</a:Address>"
        "<a:ReferenceParameters>"
        "<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>"
        f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
        "</a:ReferenceParameters></x:ResourceCreated>"
        f"<rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId></rsp:Shell>"
    )
    return envelope(f"{NS_TRANSFER}/CreateResponse", relates_to, body)


def command_response(relates_to: str, command_id: str) -> bytes:
    body = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
    return envelope(f"{NS_SHELL}/CommandResponse", relates_to, body)


def signal_response(relates_to: str) -> bytes:
    return envelope(f"{NS_SHELL}/SignalResponse", relates_to, "<rsp:SignalResponse/>")


def deleted_response(relates_to: str) -> bytes:
    return envelope(f"{NS_TRANSFER}/DeleteResponse", relates_to, "")


def receive_response(
    relates_to: str, command_id: str, stdout: bytes, stderr: bytes, done: bool,
    status: int | None,
) -> bytes:
    cid = quoteattr(command_id)
    parts = ["<rsp:ReceiveResponse>"]
    for name, data in (("stdout", stdout), ("stderr", stderr)):
        if data:
            parts.append(
                f'<rsp:Stream Name="{name}" CommandId={cid}>'
                f"{base64.b64encode(data).decode('ascii')}</rsp:Stream>"
            )
    if done:
        parts.append(f'<rsp:Stream Name="stdout" CommandId={cid} End="true"/>')
        parts.append(f'<rsp:Stream Name="stderr" CommandId={cid} End="true"/>')
        # A terminated command has no exit code of its own; Windows reports 0xC000013A-ish
        # values, the lab says -1.
        code = -1 if status is None else status
        parts.append(
            f'<rsp:CommandState CommandId={cid} State="{STATE_DONE}">'
            f"<rsp:ExitCode>{code}</rsp:ExitCode></rsp:CommandState>"
        )
    else:
        parts.append(f'<rsp:CommandState CommandId={cid} State="{STATE_RUNNING}"/>')
    parts.append("</rsp:ReceiveResponse>")
    return envelope(f"{NS_SHELL}/ReceiveResponse", relates_to, "".join(parts))


def fault_response(relates_to: str, code: int, message: str) -> bytes:
    subcode = "w:TimedOut" if code == OPERATION_TIMEOUT_FAULT else "w:InternalError"
    body = (
        "<s:Fault>"
        f"<s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{subcode}</s:Value>"
        "</s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(message)}</s:Text></s:Reason>'
        f'<s:Detail><f:WSManFault Code="{code}" Machine="lab">'
        f"<f:Message>{escape(message)}</f:Message></f:WSManFault></s:Detail>"
        "</s:Fault>"
    )
    return envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)
