"""Copy Studio: streamed answers, history, token billing against the held maximum, isolation."""

from __future__ import annotations

import grpc
import pytest

from atelier.catalog.v1 import catalog_pb2
from atelier.generation.v1 import generation_pb2
from kit.errors import CODE_KEY
from kit.identity import Identity
from tests.fakes.catalog import FakeModel
from tests.generation.stack import Stack, metadata
from tests.generation.upstream import KEY, FakeUpstream


async def conversation(stack: Stack, who: Identity, model: str = "txt") -> generation_pb2.Conversation:
    request = generation_pb2.CreateConversationRequest(
        model_code=model, system_instruction="You write ad copy."
    )
    reply: generation_pb2.CreateConversationResponse = await stack.stub.CreateConversation(
        request, metadata=metadata(who)
    )
    return reply.conversation


async def send(
    stack: Stack, who: Identity, conversation_id: str, content: str, key: str = ""
) -> list[generation_pb2.SendMessageResponse]:
    request = generation_pb2.SendMessageRequest(
        conversation_id=conversation_id, content=content, idempotency_key=key, max_output_tokens=1000
    )
    return [item async for item in stack.stub.SendMessage(request, metadata=metadata(who))]


async def test_an_answer_streams_and_is_charged_from_token_usage(stack: Stack) -> None:
    user = stack.user(10_000)
    chat = await conversation(stack, user)
    items = await send(stack, user, chat.id, "a slogan for green tea", key="m1")
    assert items[0].WhichOneof("event") == "user_message"
    deltas = [i.delta.text for i in items if i.WhichOneof("event") == "delta"]
    assert len(deltas) > 3
    final = items[-1].final
    assert final.status == generation_pb2.MESSAGE_STATUS_COMPLETED
    assert final.content == "".join(deltas)
    usage = final.usage
    expected = -(-(usage.input_tokens * 100 + usage.output_tokens * 400) // 1000)
    assert final.charge.milli == expected > 0
    # The maximum was held: estimated input + 1000 output tokens at 0.4 credit per 1k.
    hold = stack.ledger.holds[final.hold_id]
    assert hold.amount >= 400
    event = await stack.wait_completed(final.id)
    assert event.charge.milli == expected
    assert event.price.milli == hold.amount
    assert stack.ledger.available(user.user_id) == 10_000 - expected
    # A replay of the key returns the final message without calling the model again.
    again = await send(stack, user, chat.id, "a slogan for green tea", key="m1")
    assert [i.WhichOneof("event") for i in again] == ["final"]
    assert again[0].final.id == final.id
    got = (
        await stack.stub.GetConversation(
            generation_pb2.GetConversationRequest(conversation_id=chat.id), metadata=metadata(user)
        )
    ).conversation
    assert [m.role for m in got.messages] == [
        generation_pb2.MESSAGE_ROLE_USER,
        generation_pb2.MESSAGE_ROLE_ASSISTANT,
    ]
    assert got.title == "a slogan for green tea"


async def test_history_goes_to_gemini_and_usage_comes_back(stack: Stack, upstream: FakeUpstream) -> None:
    channel = catalog_pb2.ChannelBinding(
        channel_code="gem",
        adapter=catalog_pb2.ADAPTER_KIND_GEMINI,
        base_url=f"{upstream.url}/gemini",
        api_key_ref="FAKE_KEY",
        upstream_model_id="gemini-2.5-pro",
    )
    stack.catalog.models["gem"] = FakeModel(
        "gem",
        "text",
        catalog_pb2.BILLING_UNIT_PER_1K_TOKENS,
        0,
        channel=channel,
        input_per_1k=1000,
        output_per_1k=8000,
    )
    stack.settings.provider_keys = {"FAKE_KEY": KEY}
    user = stack.user(100_000)
    chat = await conversation(stack, user, "gem")
    await send(stack, user, chat.id, "first")
    items = await send(stack, user, chat.id, "second")
    final = items[-1].final
    assert final.content == "Bright mornings start here."
    assert (final.usage.input_tokens, final.usage.output_tokens) == (20, 4)
    assert final.charge.milli == 20 + 32
    contents = upstream.bodies["gemini.stream"][1]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert upstream.bodies["gemini.stream"][1]["systemInstruction"] == {
        "parts": [{"text": "You write ad copy."}]
    }


async def test_insufficient_balance_stores_no_message(stack: Stack) -> None:
    user = stack.user(10)
    chat = await conversation(stack, user)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send(stack, user, chat.id, "hello")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    got = (
        await stack.stub.GetConversation(
            generation_pb2.GetConversationRequest(conversation_id=chat.id), metadata=metadata(user)
        )
    ).conversation
    assert not got.messages


async def test_a_failed_answer_is_not_charged(stack: Stack) -> None:
    assert stack.providers is not None
    stack.providers.local.failure_fraction = 1.0
    user = stack.user(10_000)
    chat = await conversation(stack, user)
    items = await send(stack, user, chat.id, "hello")
    final = items[-1].final
    assert final.status == generation_pb2.MESSAGE_STATUS_FAILED
    assert final.charge.milli == 0
    event = await stack.wait_completed(final.id)
    assert event.status == generation_pb2.TASK_STATUS_FAILED
    assert stack.ledger.releases == [final.hold_id]
    assert stack.ledger.available(user.user_id) == 10_000


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("no-such-model", grpc.StatusCode.NOT_FOUND, "model_not_found"),
        ("off", grpc.StatusCode.FAILED_PRECONDITION, "model_disabled"),
        ("img", grpc.StatusCode.INVALID_ARGUMENT, "unsupported_spec"),
        ("vid", grpc.StatusCode.INVALID_ARGUMENT, "unsupported_spec"),
    ],
)
async def test_a_conversation_needs_an_enabled_text_model(
    stack: Stack, model: str, status: grpc.StatusCode, code: str
) -> None:
    """Refused when it is created, with the catalog's reason, not at its first message."""
    stack.catalog.models["off"] = FakeModel(
        "off", "text", catalog_pb2.BILLING_UNIT_PER_1K_TOKENS, 0, enabled=False, output_per_1k=400
    )
    user = stack.user(10_000)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await conversation(stack, user, model)
    assert caught.value.code() == status
    assert dict(caught.value.trailing_metadata() or ()).get(CODE_KEY) == code
    listed = await stack.stub.ListConversations(
        generation_pb2.ListConversationsRequest(), metadata=metadata(user)
    )
    assert not listed.conversations
    assert not stack.ledger.holds


async def test_conversations_are_private(stack: Stack) -> None:
    owner, other = stack.user(10_000), stack.user(10_000)
    chat = await conversation(stack, owner)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.GetConversation(
            generation_pb2.GetConversationRequest(conversation_id=chat.id), metadata=metadata(other)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send(stack, other, chat.id, "hi")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await stack.stub.ListConversations(
        generation_pb2.ListConversationsRequest(), metadata=metadata(other)
    )
    assert not listed.conversations
    mine = await stack.stub.ListConversations(
        generation_pb2.ListConversationsRequest(), metadata=metadata(owner)
    )
    assert [c.id for c in mine.conversations] == [chat.id]
