"""transformers 4.44 - 5.x: bfloat16 model loading becomes float16 where the profile refuses bfloat16 (V100, T4).

Opt-out switch `hf_dtype` (setup(hf_dtype=False) or COMPAT_HF_DTYPE=0); setup() turns it on by default on profiles
that refuse bfloat16 and leaves it off elsewhere. Targets (transformers/modeling_utils.py):
PreTrainedModel.from_pretrained and PreTrainedModel._from_config (what AutoModel*.from_config calls); the
replacements (compat/hf/dtype.py) pass a bfloat16 `torch_dtype`/`dtype` request on as float16 and cast bfloat16
weights the request did not name ("auto") after loading. Fingerprints from every release wheel 4.44.0 - 5.24.0.
"""

from __future__ import annotations

from ...hf.dtype import make_from_config, make_from_pretrained
from ..engine import Patch, PatchSet

LEDGER = """\
patch                                what                                                     upstream fix
transformers_dtype.from_pretrained   bfloat16 request -> float16; leftover bf16 weights cast   none: bf16 is a user
transformers_dtype.from_config       the same for AutoModel*.from_config / _from_config        choice upstream
"""

PATCH_SET = PatchSet(
    name="transformers_dtype",
    package="transformers",
    versions=">=4.44.0,<6",
    watch="transformers.modeling_utils",
    switch="hf_dtype",
    ledger=LEDGER,
    patches=(
        Patch(
            id="transformers_dtype.from_pretrained",
            target="transformers.modeling_utils:PreTrainedModel.from_pretrained",
            why="bf16 requested on a GPU without bf16 (V100/T4): emulated or failing kernels; fp16 is the native type",
            upstream_fix="none (the dtype is the caller's choice; compat makes it per profile)",
            fingerprint=(
                "sha256:09ee5ccf47a3572b",  # 4.44.0, line 2905
                "sha256:1c5cd5382b8fc3b3",  # 4.44.1, 4.44.2, line 2927
                "sha256:81f5eb279ee828c6",  # 4.45.0, 4.45.1, 4.45.2, line 2974/2980
                "sha256:0ef6723a741d6441",  # 4.46.1, 4.46.2, 4.46.3, line 3179
                "sha256:dbb63c8377cc2c51",  # 4.47.0, 4.47.1, line 3186
                "sha256:aadf1c6bc655dc03",  # 4.48.0, 4.48.1, line 3132
                "sha256:fc216d9d82a37ec9",  # 4.48.2, 4.48.3, line 3132
                "sha256:bbb2ebb7f65e509d",  # 4.49.0, line 3184
                "sha256:db99140f0179efed",  # 4.50.0, 4.50.1, 4.50.2, 4.50.3, line 3763
                "sha256:8ebff942aeebd0cc",  # 4.51.0, line 3740
                "sha256:0f392c7cdeffa4b6",  # 4.51.1, 4.51.2, 4.51.3, line 3735
                "sha256:55fd46faa1355931",  # 4.52.1, line 3887
                "sha256:a279438d8f6ffb65",  # 4.52.2, 4.52.3, 4.52.4, line 3889/3890
                "sha256:7c3127ef9be5adc2",  # 4.53.0, line 4145
                "sha256:a9bc2f565543d6a2",  # 4.53.1, 4.53.2, 4.53.3, line 4149
                "sha256:8b3e91b31cd40e9f",  # 4.54.0, line 4317
                "sha256:14198b52fc4b7be7",  # 4.54.1, line 4315
                "sha256:089f90e3e30f4f8c",  # 4.55.0 - 4.55.4 (5 releases), line 4372/4380/4385
                "sha256:3be87bb3255e3e4f",  # 4.56.0, 4.56.1, 4.56.2, line 4498/4501
                "sha256:450de7b3704a5ea0",  # 4.57.1 - 4.57.6 (6 releases), line 4382
                "sha256:d0e91e791bbe867d",  # 5.0.0, line 3672
                "sha256:dbda82985aeb9767",  # 5.1.0, line 3621
                "sha256:5d65b0aec2791507",  # 5.2.0, line 3630
                "sha256:ec77c10d72d77e85",  # 5.3.0, line 3693
                "sha256:8d2845b8ad7ade7c",  # 5.4.0 - 5.5.4 (6 releases), line 3678/3680/3683
                "sha256:793d7aae6ea169db",  # 5.6.0, 5.6.1, 5.6.2, line 3729
                "sha256:2e90ddeeee93561a",  # 5.7.0 - 5.10.4 (7 releases), line 3759/3810/3822
                "sha256:62395ae4186a6e2d",  # 5.11.0, 5.12.0, 5.12.1, line 3828/3835
                "sha256:8538a6d2b507940b",  # 5.13.0, 5.13.1, 5.14.0, 5.14.1, line 3873/3961
                "sha256:422c7fa73e6439f1",  # 5.15.0, 5.15.1, 5.16.0, line 3858/3880
                "sha256:b0cbd93a124a75a7",  # 5.16.1, line 3880
                "sha256:b0e83d48984b44db",  # 5.17.0, line 3818
                "sha256:0824466b4bd47434",  # 5.18.0, line 3825
                "sha256:bde31d3997f33242",  # 5.19.0, line 3823
                "sha256:37689e21a22e35b5",  # 5.20.0 - 5.22.2 (8 releases), line 3822
                "sha256:b47fdf5b0c59fc29",  # 5.23.0, 5.24.0, line 3893/3902
            ),
            make=make_from_pretrained,
        ),
        Patch(
            id="transformers_dtype.from_config",
            target="transformers.modeling_utils:PreTrainedModel._from_config",
            why="bf16 requested on a GPU without bf16 (V100/T4): emulated or failing kernels; fp16 is the native type",
            upstream_fix="none (the dtype is the caller's choice; compat makes it per profile)",
            fingerprint=(
                "sha256:7489c19161e921ca",  # 4.44.0, line 1434
                "sha256:da00123fc1b0f623",  # 4.44.1 - 4.45.2 (5 releases), line 1459/1475
                "sha256:d3d8e1b7d9af7d96",  # 4.46.1, 4.46.2, 4.46.3, line 1496
                "sha256:531ae73f1f7e3db5",  # 4.47.0 - 4.48.3 (6 releases), line 1402/1460
                "sha256:254759b3df32b5da",  # 4.49.0 - 4.50.3 (5 releases), line 1448/1983
                "sha256:9a2ac154fea63dd8",  # 4.51.0, 4.51.1, 4.51.2, 4.51.3, line 1981
                "sha256:9da24064d6d4cceb",  # 4.52.1, 4.52.2, 4.52.3, 4.52.4, line 2022/2023/2024
                "sha256:0d1b922eb7991af8",  # 4.53.0, 4.53.1, 4.53.2, 4.53.3, line 2158
                "sha256:49636cef37e7fe93",  # 4.54.0 - 4.55.4 (7 releases), line 2307/2344/2345
                "sha256:be78d3007852651f",  # 4.56.0 - 4.57.6 (9 releases), line 2269/2394
                "sha256:08cbafe3d99b3515",  # 5.0.0, 5.1.0, 5.2.0, line 1433/1434/1468
                "sha256:f6e2f64a2b1b9984",  # 5.3.0, line 1439
                "sha256:f6d50f3558fd35a8",  # 5.4.0 - 5.11.0 (17 releases), line 1440/1484/1507/1552/1560
                "sha256:04fd7af3b844ea85",  # 5.12.0 - 5.22.2 (21 releases), lines 1392-1604
                "sha256:d8e4f1ed58bd9b22",  # 5.23.0, 5.24.0, line 1392
            ),
            make=make_from_config,
        ),
    ),
)
