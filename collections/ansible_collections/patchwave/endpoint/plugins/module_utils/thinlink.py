# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hosts behind a thin link: a download limit and a caching apt relay (an http proxy such as
apt-cacher-ng) for the commands that download. The relay is checked before anything is fetched,
so a host whose relay is down fails clearly instead of falling back to the slow link. The
backend turns the limit and the relay into its own options (PackageManager.use_link)."""

from __future__ import annotations

import re
import socket

RELAY_RE = re.compile(r"^http://(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
                      r"(?::(?P<port>\d{1,5}))?/?$")


def link_problem(limit_kbps, relay, timeout=10):
    """None when the limit is sane and the relay (if any) is a proxy URL that accepts a TCP
    connection from this host; else what is wrong, for fail_json."""
    if limit_kbps is not None and limit_kbps < 0:
        return "download_limit_kbps must be 0 (no limit) or more, not %d" % limit_kbps
    if not relay:
        return None
    match = RELAY_RE.match(relay)
    if not match:
        return "relay %r must be an apt proxy URL http://HOST[:PORT]/" % relay
    host, port = match.group("host").strip("[]"), int(match.group("port") or 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        return "relay %s does not accept connections from this host (%s); nothing was downloaded" % (relay, exc)
    return None


MODULE_OPTIONS = dict(
    download_limit_kbps=dict(type="int", default=0),
    relay=dict(type="str"),
)
