"""Hypothesis strategies for valid protocol values, shared by the tests/shared modules."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

from chat.shared.features import FEATURE_NAME_MAX, FEATURES, FEATURES_MAX
from chat.shared.messages import (
    ID_TEXT_MAX,
    INVITE_MAX,
    MAX_ID,
    NAME_RE,
    PASSWORD_MAX,
    TEXT_MAX,
    TOKEN_MAX,
    Auth,
    AuthOk,
    ClientBye,
    DeleteAccount,
    Error,
    HistoryPage,
    HistoryRequest,
    Invitation,
    Marker,
    Markers,
    Msg,
    OfflineAck,
    Ok,
    Passwd,
    Ping,
    Pong,
    Read,
    ReadNotice,
    RoomCreate,
    RoomEvent,
    RoomInfo,
    RoomInvite,
    RoomJoin,
    RoomKick,
    RoomLeave,
    RoomList,
    RoomListRequest,
    Rooms,
    RoomSent,
    RoomState,
    RoomTopic,
    Roster,
    RosterAck,
    Send,
    Sent,
    ServerBye,
    Typing,
    TypingNotice,
    Users,
    UserSearch,
)
from chat.shared.notices import (
    EVENTS_WITH_BY,
    EVENTS_WITH_TOPIC,
    MARKER_BOUNDS,
    UNREAD_MAX,
    RoomEventKind,
)
from chat.shared.requests import PREFIX_MAX, TYPING_STATES
from chat.shared.rooms import ROOM_RE, TOPIC_MAX

names = st.from_regex(NAME_RE, fullmatch=True)
name_lists = st.lists(names, max_size=5).map(tuple)
# Hypothesis' default alphabet has no surrogates, so every value is encodable UTF-8.
passwords = st.text(min_size=1, max_size=PASSWORD_MAX)
texts = st.text(min_size=1, max_size=TEXT_MAX)
msg_ids = st.one_of(st.text(max_size=ID_TEXT_MAX), st.integers(min_value=-MAX_ID, max_value=MAX_ID))
rooms = st.from_regex(ROOM_RE, fullmatch=True)
topics = st.text(max_size=TOPIC_MAX)
#: "*", a user or a room: what `history.with` and `read.with` name (v1.2 section 3).
conversations = st.one_of(st.just("*"), names, rooms)
recipients = st.one_of(st.just("*"), rooms, st.lists(names, min_size=1, max_size=5).map(tuple))
seqs = st.integers(min_value=1, max_value=MAX_ID)
server_ids = st.integers(min_value=1, max_value=MAX_ID)
markers = st.integers(min_value=MARKER_BOUNDS[0], max_value=MARKER_BOUNDS[1])
safe_ints = st.integers(min_value=-MAX_ID, max_value=MAX_ID)
timestamps = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)
#: What a client may ask for: known names, unknown ones, repeats.
asked_features = st.lists(
    st.sampled_from(FEATURES) | st.text(max_size=FEATURE_NAME_MAX), max_size=FEATURES_MAX
).map(tuple)
#: What a server grants: known names, each once.
granted_features = st.lists(st.sampled_from(FEATURES), unique=True).map(tuple)
tokens = st.text(min_size=1, max_size=TOKEN_MAX)
invites = st.text(min_size=1, max_size=INVITE_MAX)
typing_to = st.one_of(names, rooms, st.lists(names, min_size=1, max_size=3).map(tuple))
typing_states = st.sampled_from(TYPING_STATES)

#: The client frames of protocol v1.2 (requests.py), every field drawn within its bounds.
v12_requests = st.one_of(
    st.builds(RoomCreate, msg_ids, rooms, topics, st.booleans()),
    st.builds(RoomJoin, msg_ids, rooms),
    st.builds(RoomLeave, msg_ids, rooms),
    st.builds(RoomInvite, msg_ids, rooms, names),
    st.builds(RoomKick, msg_ids, rooms, names),
    st.builds(RoomTopic, msg_ids, rooms, topics),
    st.builds(RoomListRequest, msg_ids),
    st.builds(Read, conversations, safe_ints),
    st.builds(Typing, typing_to, typing_states),
    st.builds(Passwd, msg_ids, passwords, passwords, st.booleans()),
    st.builds(DeleteAccount, msg_ids, passwords),
    st.builds(UserSearch, msg_ids, st.text(max_size=PREFIX_MAX)),
)

client_messages = st.one_of(
    st.builds(Auth, names, passwords, st.booleans()),
    st.builds(
        Auth,
        names,
        passwords,
        st.booleans(),
        st.none() | asked_features,
        st.none(),
        st.none() | invites,
    ),
    st.builds(
        lambda user, asked, token: Auth(user, None, False, asked, token),
        names,
        st.none() | asked_features,
        tokens,
    ),
    st.builds(RosterAck, seqs),
    st.builds(Send, msg_ids, recipients, texts),
    st.just(Ping()),
    st.just(ClientBye()),
    st.builds(
        HistoryRequest,
        msg_ids,
        conversations,
        st.none() | server_ids,
        st.integers(min_value=1, max_value=200),
    ),
    st.builds(OfflineAck, st.integers(min_value=0, max_value=MAX_ID)),
    v12_requests,
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


@st.composite
def room_events(draw: st.DrawFn) -> RoomEvent:
    """A `room_event` with `by` and `topic` exactly where its kind has them."""
    event = draw(st.sampled_from(RoomEventKind))
    by = draw(names) if event in EVENTS_WITH_BY else None
    topic = draw(topics) if event in EVENTS_WITH_TOPIC else None
    return RoomEvent(draw(rooms), event, draw(names), draw(timestamps), by, topic)


#: The server frames of protocol v1.2 (notices.py, and the room `sent`).
v12_notices = st.one_of(
    st.builds(Ok, msg_ids),
    st.builds(
        RoomList,
        msg_ids,
        st.lists(
            st.builds(
                RoomInfo,
                rooms,
                topics,
                st.booleans(),
                names,
                st.integers(min_value=0, max_value=MAX_ID),
                st.booleans(),
                st.booleans(),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(
        Rooms,
        st.lists(
            st.builds(RoomState, rooms, topics, st.booleans(), names, name_lists, markers),
            max_size=3,
        ).map(tuple),
        st.lists(st.builds(Invitation, rooms, names), max_size=3).map(tuple),
    ),
    room_events(),
    st.builds(
        Markers,
        st.lists(
            st.builds(
                Marker,
                conversations,
                markers,
                markers,
                st.integers(min_value=0, max_value=UNREAD_MAX),
            ),
            max_size=4,
        ).map(tuple),
    ),
    st.builds(ReadNotice, conversations, markers),
    st.builds(TypingNotice, names, typing_to, typing_states),
    st.builds(Users, msg_ids, name_lists, st.booleans()),
    st.builds(RoomSent, msg_ids, server_ids, rooms),
)

server_messages = st.one_of(
    st.builds(AuthOk, names),
    st.builds(AuthOk, names, st.none() | granted_features, st.none() | tokens),
    st.builds(lambda seq, users: Roster(seq, True, users=users), seqs, name_lists),
    st.builds(
        lambda seq, j, lv: Roster(seq, False, join=j, leave=lv), seqs, name_lists, name_lists
    ),
    st.builds(Sent, msg_ids, name_lists, name_lists, name_lists),
    st.builds(Sent, msg_ids, name_lists, name_lists, name_lists, server_ids),
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
        st.sampled_from(["bad_request", "not_ready", "timeout", "no_such_room", "banned"]),
        st.text(max_size=40),
        st.none() | msg_ids,
    ),
    v12_notices,
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
