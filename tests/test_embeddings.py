"""Embedding providers: hash (tests only), the local model for real, Bedrock Titan and Cohere
through the real boto3 against a protocol-faithful fake on loopback."""

from __future__ import annotations

import asyncio
import math
import socket

import boto3
import pytest

from soulprint.models.embedding import EmbeddingSpace
from soulprint.services.embeddings import (DEFAULT_LOCAL_MODEL, BedrockCohereEmbedder, BedrockTitanEmbedder,
                                           EmbeddingError, HashEmbedder, LocalEmbedder, build_embedder)
from support.fake_bedrock_embeddings import FakeBedrockEmbeddings, aws_environment

# Dummy credentials, passed to boto3 explicitly: nothing is read from ~/.aws.
AWS = {"aws_access_key_id": "AKIAFAKEFAKEFAKE", "aws_secret_access_key": "fake-secret", "region": "us-east-1"}


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


async def _no_sleep(_s: float) -> None:
    return None


# ---------------------------------------------------------------- space and factory


def test_space_id_is_stable_and_names_provider_model_and_dimensions():
    space = EmbeddingSpace("bedrock-titan", "amazon.titan-embed-text-v2:0", 512)
    assert space.space_id == "bedrock-titan/amazon.titan-embed-text-v2:0/512"
    with pytest.raises(ValueError):
        EmbeddingSpace("local", "m", 0)


def test_unknown_provider_is_an_error_never_a_fallback():
    with pytest.raises(EmbeddingError, match="unknown embedding provider 'openai'"):
        build_embedder("openai")
    with pytest.raises(EmbeddingError, match="unknown model 'nope'"):
        build_embedder("local", model="nope")
    with pytest.raises(EmbeddingError, match="dimensions must be one of"):
        build_embedder("bedrock-titan", dimensions=300)


# ---------------------------------------------------------------- hash


async def test_hash_embedder_is_deterministic_normalised_and_word_sensitive():
    a, b = HashEmbedder(dimensions=128), HashEmbedder(dimensions=128)
    texts = ["the boiler is leaking again", "the boiler is leaking again", "marathon training in Porto"]
    va, vb = await a.embed(texts, "document"), await b.embed(texts, "query")
    assert va == vb
    assert all(len(v) == 128 and abs(_norm(v) - 1) < 1e-9 for v in va)
    assert _cos(va[0], va[1]) == pytest.approx(1.0)
    assert _cos(va[0], va[2]) < 0.5
    assert build_embedder("hash").space.space_id == "hash/feature-hash-v1/256"


async def test_more_texts_than_a_batch_are_refused_by_embed_and_cut_by_embed_all():
    emb = HashEmbedder(dimensions=16)
    emb.max_batch = 3
    with pytest.raises(ValueError, match="at most 3"):
        await emb.embed(["a", "b", "c", "d"], "document")
    assert len(await emb.embed_all(["a", "b", "c", "d", "e"], "document")) == 5


# ---------------------------------------------------------------- local, for real


@pytest.fixture(scope="module")
def local_model():
    """Loaded once per module, with every network path closed: no hub, and no socket may connect."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _refuse_connect)
        return LocalEmbedder()


def _refuse_connect(self, address):
    raise OSError(f"network is off in this test (connect to {address!r})")


async def test_local_model_loads_offline_with_declared_dimensions_normalised(local_model):
    assert local_model.space.provider == "local" and local_model.space.model == DEFAULT_LOCAL_MODEL
    vectors = await local_model.embed(["Pack an umbrella for Oslo.", "Eu gosto de pão."], "document")
    assert [len(v) for v in vectors] == [local_model.space.dimensions] * 2
    assert all(abs(_norm(v) - 1) < 1e-5 for v in vectors)


async def test_local_model_ranks_the_matching_passage_first(local_model):
    passages = [
        "My landlord still has not repaired the boiler, and hot water leaks onto the kitchen floor.",
        "Sixteen-week marathon plan with four runs a week and a long run on Sundays.",
        "A sourdough starter is a culture of wild yeast and lactic acid bacteria.",
    ]
    docs = await local_model.embed(passages, "document")
    (query,) = await local_model.embed(["the heater in my flat is dripping water"], "query")
    scores = [_cos(query, d) for d in docs]
    assert scores.index(max(scores)) == 0


# ---------------------------------------------------------------- Bedrock through boto3


@pytest.fixture
async def bedrock():
    async with FakeBedrockEmbeddings() as srv:
        yield srv


def _titan(srv: FakeBedrockEmbeddings, **kw) -> BedrockTitanEmbedder:
    return BedrockTitanEmbedder(endpoint_url=srv.url, sleep=_no_sleep, **AWS, **kw)


def _cohere(srv: FakeBedrockEmbeddings, **kw) -> BedrockCohereEmbedder:
    return BedrockCohereEmbedder(endpoint_url=srv.url, sleep=_no_sleep, **AWS, **kw)


@pytest.mark.parametrize("dims", [256, 512, 1024])
async def test_titan_returns_vectors_of_the_asked_dimensions(bedrock, dims):
    emb = _titan(bedrock, dimensions=dims, concurrency=3)
    texts = [f"text number {i} about boilers" for i in range(7)]
    vectors = await emb.embed(texts, "document")
    assert emb.space.space_id == f"bedrock-titan/amazon.titan-embed-text-v2:0/{dims}"
    assert [len(v) for v in vectors] == [dims] * 7 and all(abs(_norm(v) - 1) < 1e-9 for v in vectors)
    assert bedrock.stats["batch_sizes"] == [1] * 7  # one text per request
    # In order: each vector is the one its own text gets alone.
    assert await emb.embed([texts[4]], "query") == [vectors[4]]


async def test_titan_retries_throttling_then_succeeds(bedrock):
    bedrock.throttle(3)
    vectors = await _titan(bedrock, dimensions=256).embed(["hello there"], "document")
    assert len(vectors[0]) == 256
    assert bedrock.stats["status"][429] == 3 and bedrock.stats["status"][200] == 1


async def test_titan_gives_up_after_max_attempts_with_one_line(bedrock):
    bedrock.throttle(10)
    with pytest.raises(EmbeddingError) as err:
        await _titan(bedrock, dimensions=256, max_attempts=2).embed(["hello"], "document")
    assert "gave up after 2 attempts" in str(err.value) and "429 ThrottlingException" in str(err.value)
    assert "\n" not in str(err.value)


async def test_titan_validation_error_is_surfaced_as_one_clear_line(bedrock):
    emb = _titan(bedrock, dimensions=256)
    emb.space = EmbeddingSpace("bedrock-titan", emb.model, 300)  # what a bad setting would send
    with pytest.raises(EmbeddingError) as err:
        await emb.embed(["hello"], "document")
    message = str(err.value)
    assert message.startswith("bedrock-titan amazon.titan-embed-text-v2:0: 400 ValidationException:")
    assert "#/dimensions: 300 is not a valid enum value" in message and "\n" not in message
    assert bedrock.stats["status"][400] == 1  # a refusal is not retried


async def test_cohere_batches_at_most_96_with_input_type_per_kind(bedrock):
    emb = _cohere(bedrock, model="cohere.embed-multilingual-v3")
    texts = [f"chunk {i} " + "word " * 600 for i in range(200)]  # longer than 2,048 characters
    vectors = await emb.embed_all(texts, "document")
    assert len(vectors) == 200 and all(len(v) == 1024 and abs(_norm(v) - 1) < 1e-9 for v in vectors)
    assert bedrock.stats["batch_sizes"] == [96, 96, 8]
    assert bedrock.stats["input_types"] == {"search_document": 3}
    await emb.embed(["where is the boiler"], "query")
    assert bedrock.stats["input_types"]["search_query"] == 1
    assert emb.space.space_id == "bedrock-cohere/cohere.embed-multilingual-v3/1024"


async def test_cohere_is_normalised_and_texts_sharing_words_are_close(bedrock):
    emb = _cohere(bedrock)
    a, b, c = await emb.embed(["boiler leaking kitchen", "kitchen boiler leaking", "marathon in Porto"], "document")
    assert _cos(a, b) == pytest.approx(1.0) and _cos(a, c) < 0.5


async def test_cohere_throttling_is_retried(bedrock):
    bedrock.throttle(2)
    assert len(await _cohere(bedrock).embed(["a", "b"], "document")) == 2
    assert bedrock.stats["status"][429] == 2


async def test_fake_refuses_what_bedrock_refuses(bedrock):
    # The fake's own validation, through a plain boto3 client: the real service's error shapes.
    client = boto3.client("bedrock-runtime", endpoint_url=bedrock.url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="y")
    cases = [
        ("cohere.embed-english-v3", b'{"texts": ["a"]}', "required key [input_type] not found"),
        ("cohere.embed-english-v3", b'{"texts": ' + str(["a"] * 97).replace("'", '"').encode()
         + b', "input_type": "search_query"}', "maximum item count: 96"),
        ("amazon.titan-embed-text-v2:0", b'{"inputText": "a", "dimensions": 100}', "not a valid enum value"),
        ("amazon.titan-embed-text-v2:0", b'{"text": "a"}', "extraneous key [text]"),
        ("amazon.titan-embed-text-v1:9", b'{"inputText": "a"}', "model identifier is invalid"),
    ]
    for model, body, expected in cases:
        with pytest.raises(client.exceptions.ValidationException, match=expected.replace("[", r"\[")):
            await asyncio.to_thread(client.invoke_model, modelId=model, body=body, contentType="application/json")


async def test_missing_credentials_fail_at_once_with_one_line(bedrock, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    emb = BedrockTitanEmbedder(endpoint_url=bedrock.url, region="us-east-1", sleep=_no_sleep)
    with pytest.raises(EmbeddingError, match="Unable to locate credentials"):
        await emb.embed(["hello"], "document")
    assert bedrock.stats["requests"] == 0


@pytest.mark.parametrize("provider, dimensions, space_id", [
    ("bedrock-titan", 512, "bedrock-titan/amazon.titan-embed-text-v2:0/512"),
    ("bedrock-cohere", None, "bedrock-cohere/cohere.embed-english-v3/1024"),
])
async def test_the_configured_bedrock_provider_reaches_its_endpoint(bedrock, monkeypatch, provider, dimensions,
                                                                     space_id):
    """Settings → runtime.build_configured_embedder → boto3 → the endpoint (credentials from the environment)."""
    from soulprint.runtime import build_configured_embedder
    from soulprint.settings import load_settings

    aws_environment(monkeypatch)
    env = {"SOULPRINT_EMBEDDING_PROVIDER": provider, "SOULPRINT_BEDROCK_ENDPOINT_URL": bedrock.url,
           "AWS_REGION": "us-east-1"} | ({"SOULPRINT_EMBEDDING_DIMENSIONS": str(dimensions)} if dimensions else {})
    emb = build_configured_embedder(load_settings(env).embedding)
    assert emb.space.space_id == space_id
    docs = await emb.embed(["the boiler is leaking", "marathon in Porto"], "document")
    (query,) = await emb.embed(["boiler leaking"], "query")
    assert all(len(v) == emb.space.dimensions for v in (*docs, query))
    assert _cos(query, docs[0]) > _cos(query, docs[1])
    assert bedrock.stats["status"][200] == bedrock.stats["requests"] > 0

