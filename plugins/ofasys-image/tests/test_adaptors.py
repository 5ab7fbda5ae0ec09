"""The image adaptors: segments, 2-D positions, masks of padded images, ResNet weights, parameter counts."""

from __future__ import annotations

import pytest
import torch

from ofasys import GeneralistModel
from ofasys.errors import ConfigError
from ofasys.model.adaptor import EncoderBatch
from ofasys_image.adaptors import ImagePatchAdaptor, ImageResNetAdaptor, ResNetTrunk

OFA_VOCAB_ROWS = 59457  # GPT-2 BPE 50,265 + 8,192 image codes + 1,000 bins: the rows OFA's totals include


def test_patch_adaptor_makes_a_grid_segment_with_row_col_positions():
    ad = ImagePatchAdaptor(d_model=32, patch_size=8)
    assert (ad.bias_kind, ad.bias_dims) == ("image2d", 2)
    seg = ad({"pixels": torch.randn(2, 3, 32, 24), "hw": torch.tensor([[32, 24], [16, 24]])})
    assert seg.embeds.shape == (2, 12, 32)  # 4 rows x 3 cols
    assert seg.pos[0].tolist()[:4] == [[0, 0], [0, 1], [0, 2], [1, 0]]
    assert seg.bias_kind == "image2d"
    assert seg.mask[0].all() and seg.mask[1].tolist() == [True] * 6 + [False] * 6  # 2 of 4 rows are padding


def test_resnet_adaptor_has_stride_16_and_1024_channels():
    with torch.device("meta"):  # shapes only
        ad = ImageResNetAdaptor(d_model=32, depth="resnet50").eval()
        seg = ad({"pixels": torch.randn(1, 3, 64, 48), "hw": torch.tensor([[64, 48]])})
    assert seg.embeds.shape == (1, 12, 32)  # 4 x 3 positions
    assert ad.proj.in_features == 1024
    assert not any(n.startswith(("layer4", "fc")) for n, _ in ad.backbone.named_parameters())


def test_torchvision_weights_load_into_the_backbone(tmp_path):
    torch.manual_seed(0)
    trained = ResNetTrunk("resnet50")
    state = {"module." + k: v for k, v in trained.state_dict().items()}  # as saved from DataParallel
    state["fc.weight"] = torch.zeros(1000, 2048)  # torchvision checkpoints also hold layer4 and fc: ignored
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    ad = ImageResNetAdaptor(d_model=16, depth="resnet50", weights=str(path))
    assert torch.equal(ad.backbone.layer3[0].conv1.weight, trained.layer3[0].conv1.weight)
    assert torch.equal(ad.backbone.bn1.running_var, trained.bn1.running_var)
    with pytest.raises(ConfigError, match="does not match resnet101|not a torchvision resnet101"):
        ResNetTrunk("resnet101").load_torchvision_weights(str(path))


def test_weights_attribute_is_checked_when_the_adaptor_is_built(build, tmp_path):
    g = build(f"[IMAGE:img,weights={tmp_path / 'missing.pth'}] q -> [TEXT:a]", size="tiny", d_model=256)
    with pytest.raises(ConfigError, match="missing.pth is not a file"):
        g.manager.build("adaptor", g.slot("img"), g.ctx)


def test_adaptor_variant_and_backbone_follow_the_plan_and_model_size(build):
    g = build("[IMAGE:img,adaptor=image_patch,patch_image_size=32] q -> [TEXT:a]")
    ad = g.manager.build("adaptor", g.slot("img"), g.ctx)
    assert isinstance(ad, ImagePatchAdaptor) and ad.patch_size == 8  # nano: 8 px patches
    g = build("[IMAGE:img] q -> [TEXT:a]", size="large", d_model=1024)
    assert g.slot("img").components["adaptor"] == "image_resnet"  # OFA's default adaptor
    with torch.device("meta"):
        ad = g.manager.build("adaptor", g.slot("img"), g.ctx)
    assert ad.backbone.depth == "resnet152"


def test_the_model_encodes_images_and_text_together():
    torch.manual_seed(0)
    model = GeneralistModel("nano", vocab_size=64)
    model.add_adaptor("IMAGE.image_patch", ImagePatchAdaptor(128, 8))
    assert "k_image2d" in model.rel_bias
    batch = EncoderBatch(tokens=torch.tensor([[1, 7, 8, 2], [1, 9, 2, 0]]),
                         features={"IMAGE.image_patch": {"pixels": torch.randn(2, 3, 16, 16),
                                                         "hw": torch.tensor([[16, 16], [16, 16]])}},
                         layout=[[("IMAGE.image_patch", 0), ("tokens", 0)], [("IMAGE.image_patch", 1), ("tokens", 1)]])
    out = model.encode(batch)
    assert out.hidden.shape == (2, 8, 128)  # 4 image positions + 4 tokens
    assert out.mask.sum(1).tolist() == [8, 7]


@pytest.mark.parametrize("size, depth, published", [("tiny", "resnet50", 33e6), ("base", "resnet101", 180e6)])
def test_parameter_counts_are_within_10_percent_of_ofa(size, depth, published):
    with torch.device("meta"):
        model = GeneralistModel(size, vocab_size=OFA_VOCAB_ROWS)
        model.add_adaptor("IMAGE.image_resnet", ImageResNetAdaptor(model.config.d_model, depth))
    total = model.num_parameters()
    assert abs(total - published) / published < 0.10, total
