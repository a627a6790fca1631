"""Network failures as the host prints them: Go's net/http errors (Linux and Windows agents),
Windows socket errors in English, German and French, proxies and TLS.

A message here is evidence about the path between the host and Azure, never about credentials:
an AZCM0041 ("no token") or AZCM0042/AZCM0062 that wraps one of these is a network failure.
"""

from __future__ import annotations

from fleet.azcm.catalog import (
    CHECK_URL,
    NETWORK_TROUBLESHOOT_URL,
    NETWORK_URL,
    PROXY_URL,
    TLS_URL,
)
from fleet.azcm.diagnosis import FAIL_HOST, RETRY, Category
from fleet.azcm.pattern_model import LOGIN_HOST, MessagePattern
from fleet.azcm.pattern_model import pattern as _p

C = Category

GPO_NOTE = (
    " On Windows, a Group Policy that deletes user profiles older than N days at restart also "
    "deletes the himds service profile and its cached certificate: if that policy applies, "
    "disconnect the agent and connect it again."
)

TLS_FIX = (
    "The agent needs Azure's real, publicly verifiable certificates: exclude the Azure Arc "
    "endpoints from TLS inspection on the proxy or firewall. If the host's clock is wrong, set "
    "it first (a wrong clock makes valid certificates look expired)."
)

NETWORK: tuple[MessagePattern, ...] = (
    _p("login_dns_failure",
       rf"lookup {LOGIN_HOST}.{{0,64}}no such host|Device Authorization Code.{{0,512}}no such host",
       ("no such host",), C.NETWORK, RETRY,
       "The host could not resolve the Entra ID login endpoint (DNS)." + GPO_NOTE,
       "Fix DNS for login.microsoftonline.com / login.windows.net (see `azcmagent check`)."
       + GPO_NOTE, "Failed to acquire authorization token device flow: Error occurred while "
       "sending request for Device Authorization Code: Post https://login.windows.net/"
       "00000000-0000-0000-0000-000000000000/oauth2/devicecode?api-version=1.0:  dial tcp "
       "lookup login.windows.net: no such host", doc_url=NETWORK_TROUBLESHOOT_URL),
    _p("dns_failure",
       r"no such host|Temporary failure in name resolution|Name or service not known"
       r"|server misbehaving|remote name could not be resolved|(?:Der angegebene|Dieser) Host "
       r"ist unbekannt|H[ôo]te inconnu|Ce nom d.h[ôo]te est inconnu",
       ("no such host", "name resolution", "not known", "misbehaving", "could not be resolved",
        "ist unbekannt", "te inconnu", "te est inconnu"),
       C.NETWORK, RETRY,
       "A name (an Azure endpoint or the proxy) did not resolve in DNS on the host.",
       "Fix the host's DNS for the Azure endpoints; run `azcmagent check --location <region>`.",
       "dial tcp: lookup management.azure.com on 10.0.0.2:53: no such host",
       doc_url=NETWORK_URL),
    _p("proxy_no_ip_addresses", r"no IP addresses found", ("no ip addresses",),
       C.NETWORK, FAIL_HOST,
       "A known defect of the first agent 1.31 build with proxies.",
       "Upgrade the agent past the first 1.31 build, then retry.",
       "AZCM0026: Network Error: no IP addresses found", doc_url=PROXY_URL),
    _p("proxy_auth_required",
       r"Proxy Authentication Required|\b407\b.{0,40}proxy|proxy.{0,80}\b407\b"
       r"|Proxyauthentifizierung erforderlich|Authentification du proxy n[ée]cessaire",
       ("proxy authentication", "407", "proxyauthentifizierung", "authentification du proxy"),
       C.NETWORK, FAIL_HOST,
       "The proxy ({proxy}) demands authentication (HTTP 407); the Connected Machine agent "
       "cannot authenticate to a proxy.",
       "The agent cannot authenticate to a proxy: let the Azure Arc endpoints through proxy "
       "{proxy} without authentication (for example by the hosts' source addresses), or use an "
       "Azure Arc gateway; then rerun.",
       "proxyconnect tcp: 407 Proxy Authentication Required", doc_url=PROXY_URL),
    _p("proxy_refused", r"proxyconnect tcp", ("proxyconnect",), C.NETWORK, FAIL_HOST,
       "The agent is set to use a proxy ({proxy}) that does not accept connections.",
       "Start the proxy {proxy} or fix the agent's proxy setting (`azcmagent config set "
       "proxy.url ...`, or `azcmagent config clear proxy.url` when no proxy is needed).",
       "proxyconnect tcp: dial tcp [::1]:8888: connectex: No connection could be made because "
       "the target machine actively refused it.", doc_url=PROXY_URL),
    _p("network_forbidden",
       rf"network is Forbidden|{LOGIN_HOST}/\S{{0,512}}:\s{{0,4}}Forbidden"
       r"|management\.azure\.com/\S{0,1024}:\s{0,4}Forbidden",
       ("forbidden",), C.NETWORK, FAIL_HOST,
       "A proxy or firewall blocks the Entra ID or ARM endpoint (it answered Forbidden).",
       "Allow login.microsoftonline.com, login.windows.net and management.azure.com through "
       "the proxy/firewall; `azcmagent check` shows which endpoint is blocked.",
       "Failed to acquire authorization token from SPN: Failed to execute the refresh request. "
       "Error = 'Post https://login.windows.net/00000000-0000-0000-0000-000000000000/oauth2/"
       "token?api-version=1.0: Forbidden'", doc_url=CHECK_URL),
    _p("tls_certificate_time",
       r"certificate has expired or is not yet valid|x509: certificate (?:has )?expired"
       r"|certificate is not yet valid",
       ("expired", "not yet valid"), C.NETWORK, FAIL_HOST,
       "A TLS certificate on the way to Azure looked expired or not yet valid: either the "
       "host's clock is wrong, or a TLS-inspecting device presents an outdated certificate.",
       "Compare the host's clock with real time first and set it (chrony/ntpd, w32time) if it "
       "is off. " + TLS_FIX, "tls: failed to verify certificate: x509: certificate has expired "
       "or is not yet valid: current time 2031-01-01T00:00:00Z is after 2027-06-30T23:59:59Z",
       doc_url=TLS_URL),
    _p("tls_interception",
       r"x509: |certificate signed by unknown authority|tls: failed to verify"
       r"|certificate chain was issued by an authority that is not trusted"
       r"|Vertrauensstellung .{0,60}SSL/TLS",
       ("x509", "unknown authority", "failed to verify", "not trusted",
        "vertrauensstellung"), C.NETWORK, FAIL_HOST,
       "TLS to Azure failed certificate checks (usually a TLS-inspecting proxy or firewall).",
       TLS_FIX, "tls: failed to verify certificate: x509: certificate signed by unknown "
       "authority", doc_url=TLS_URL),
    _p("tls_handshake_failed",
       r"tls: handshake failure|remote error: tls: |first record does not look like a TLS "
       r"handshake|TLS handshake (?:error|failed)|Could not establish trust relationship"
       r"|Could not create SSL/TLS secure channel",
       ("handshake", "tls", "ssl/tls", "trust relationship"), C.NETWORK, RETRY,
       "The TLS handshake with an Azure endpoint failed (TLS version, cipher, or a device in the "
       "path that breaks TLS).",
       "Allow TLS 1.2 on the host and on any proxy or firewall in the path; " + TLS_FIX,
       "Post \"https://login.microsoftonline.com/t/oauth2/token\": remote error: tls: "
       "handshake failure", doc_url=TLS_URL),
    _p("network_unreachable",
       r"network is unreachable|no route to host|Das Netzwerk ist nicht erreichbar"
       r"|Le r[ée]seau est inaccessible",
       ("unreachable", "no route", "nicht erreichbar", "inaccessible"), C.NETWORK, RETRY,
       "The host has no route to the Azure endpoint.",
       "Check the host's routing/egress to Azure on TCP 443; `azcmagent check` tests it.",
       "dial tcp 40.126.9.7:443: connect: network is unreachable", doc_url=NETWORK_URL),
    _p("connection_refused",
       r"connection refused|actively refused|connection reset by peer"
       r"|Es konnte keine Verbindung hergestellt werden|Aucune connexion n.a pu [êe]tre [ée]tablie",
       ("refused", "reset by peer", "keine verbindung", "aucune connexion"), C.NETWORK, RETRY,
       "An endpoint refused or reset the TCP connection.",
       "Check firewalls between the host and Azure on TCP 443, then retry.",
       "dial tcp 20.42.0.1:443: connect: connection refused", doc_url=NETWORK_URL),
    _p("network_timeout",
       r"i/o timeout|TLS handshake timeout|context deadline exceeded|Client\.Timeout exceeded"
       r"|did not properly respond after a period of time|Zeit[üu]berschreitung"
       r"|Verbindungsversuch ist fehlgeschlagen|n.a pas r[ée]pondu convenablement"
       r"|operation timed out|connection timed out",
       ("timeout", "deadline exceeded", "did not properly respond", "zeitüberschreitung",
        "zeitueberschreitung", "verbindungsversuch", "pas r", "timed out"), C.NETWORK, RETRY,
       "A request to Azure timed out.",
       "Retry; if it persists check proxy/firewall latency to the Azure endpoints. A host "
       "that can reach Azure only through a proxy needs it set: azure.proxy_url "
       "(arc_proxy_url) in the inventory.",
       "dial tcp 20.42.0.1:443: i/o timeout", doc_url=NETWORK_URL),
    _p("connection_closed",
       r"forcibly closed by the remote host|wsarecv|wsasend|broken pipe|unexpected EOF"
       r"|\": EOF\b|: EOF$|connection reset|vom Remotehost geschlossen"
       r"|ferm[ée]e par l.h[ôo]te distant|GOAWAY",
       ("forcibly closed", "wsarecv", "wsasend", "broken pipe", "eof", "connection reset",
        "remotehost", "distant", "goaway"), C.NETWORK, RETRY,
       "The connection to an Azure endpoint was closed part-way (a proxy, firewall or load "
       "balancer in the path dropped it).",
       "Retry; if it repeats, check the proxy or firewall between the host and Azure on TCP "
       "443 (idle timeouts, TLS inspection); `azcmagent check` tests each endpoint.",
       "Post \"https://login.microsoftonline.com/t/oauth2/token\": read tcp "
       "10.0.0.4:50712->20.190.160.1:443: wsarecv: An existing connection was forcibly closed "
       "by the remote host.", doc_url=NETWORK_URL),
    _p("dial_failed", r"\bdial (?:tcp|udp)\b|\bread tcp \S{1,64}->|\bwrite tcp \S{1,64}->",
       ("dial tcp", "dial udp", "read tcp", "write tcp"), C.NETWORK, RETRY,
       "A connection to an Azure endpoint failed at the socket level.",
       "Retry; if it repeats, check DNS, proxy and firewall between the host and Azure on TCP "
       "443 (`azcmagent check --location <region>`).",
       "dial tcp 20.42.0.1:443: connect: an unusual socket error", doc_url=NETWORK_URL),
)
