"""Hypothesis strategies for valid protocol values, shared by the tests/shared modules."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

from chat.shared.messages import (
    ID_TEXT_MAX,
    MAX_ID,
    NAME_RE,
    PASSWORD_MAX,
    TEXT_MAX,
    Auth,
    AuthOk,
    ClientBye,
    Error,
    HistoryPage,
    HistoryRequest,
    Msg,
    OfflineAck,
    Ping,
    Pong,
    Roster,
    RosterAck,
    Send,
    Sent,
    ServerBye,
)

names = st.from_regex(NAME_RE, fullmatch=True)
name_lists = st.lists(names, max_size=5).map(tuple)
# Hypothesis' default alphabet has no surrogates, so every value is encodable UTF-8.
passwords = st.text(min_size=1, max_size=PASSWORD_MAX)
texts = st.text(min_size=1, max_size=TEXT_MAX)
msg_ids = st.one_of(st.text(max_size=ID_TEXT_MAX), st.integers(min_value=-MAX_ID, max_value=MAX_ID))
recipients = st.one_of(st.just("*"), st.lists(names, min_size=1, max_size=5).map(tuple))
seqs = st.integers(min_value=1, max_value=MAX_ID)
server_ids = st.integers(min_value=1, max_value=MAX_ID)
timestamps = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)

client_messages = st.one_of(
    st.builds(Auth, names, passwords, st.booleans()),
    st.builds(RosterAck, seqs),
    st.builds(Send, msg_ids, recipients, texts),
    st.just(Ping()),
    st.just(ClientBye()),
    st.builds(
        HistoryRequest,
        msg_ids,
        st.just("*") | names,
        st.none() | server_ids,
        st.integers(min_value=1, max_value=200),
    ),
    st.builds(OfflineAck, st.integers(min_value=0, max_value=MAX_ID)),
)

msgs = st.builds(
    Msg,
    server_ids,
    names,
    recipients,
    texts,
    timestamps,
    st.booleans(),
)

server_messages = st.one_of(
    st.builds(AuthOk, names),
    st.builds(lambda seq, users: Roster(seq, True, users=users), seqs, name_lists),
    st.builds(
        lambda seq, j, lv: Roster(seq, False, join=j, leave=lv), seqs, name_lists, name_lists
    ),
    st.builds(Sent, msg_ids, name_lists, name_lists, name_lists),
    msgs,
    st.builds(
        HistoryPage,
        msg_ids,
        st.lists(msgs.map(lambda m: Msg(m.id, m.sender, m.to, m.text, m.ts)), max_size=4).map(
            tuple
        ),
        st.booleans(),
    ),
    st.just(Pong()),
    st.builds(ServerBye, st.text(max_size=20)),
    st.builds(
        Error,
        st.sampled_from(["bad_request", "not_ready", "timeout"]),
        st.text(max_size=40),
        st.none() | msg_ids,
    ),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

#: No per-example deadline: the machine is shared, and a slow example is not a wrong one.
relaxed = settings(deadline=None)
