"""Building entries from model folders, model cards (what ``push`` uploads) and pushing to the Hub."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from decodemo.errors import ModelError
from decodemo.hub.manifest import (_SHA1, CHECKPOINTS, MANIFEST, Entry, HubSource, RegistryError, folder_files,
                                   load_manifest, save_manifest)
from decodemo.hub.resolve import resolve
from decodemo.methods.catalogue import PAPERS


METHOD_README = Path(__file__).resolve().parents[1] / "methods"


def entry_from_folder(name: str, folder: str | Path, *, domain: str, class_id: str | None = None,
                      figures: dict[str, Any] | None = None, training_data: str = "", licence: str = "",
                      root: str | Path = CHECKPOINTS, hub: HubSource | None = None) -> Entry:
    """A manifest entry for a model folder: method, modality, threshold (of ``class_id`` for a
    multi-class model), input settings and the SHA-256 of every file (``files``; ``sha256`` is
    that of ``model.safetensors``) from the folder itself. A folder with a symbolic link in it is
    refused (:class:`decodemo.errors.IntegrityError`)."""
    from decodemo.methods.base import read_config

    folder = Path(folder)
    cfg = read_config(folder)
    files = folder_files(folder)
    if "model.safetensors" not in files:
        raise RegistryError(f"{name}: {folder} has no model.safetensors.")
    thr = cfg.get("threshold")
    if isinstance(thr, dict):
        if class_id is None and len(thr) == 1:
            class_id = next(iter(thr))  # a one-category model: its only class
        if class_id not in thr:
            raise RegistryError(f"{name}: {folder} is multi-class ({sorted(thr)}); give its class id.")
        thr = thr[class_id]
    if thr is None:
        raise RegistryError(f"{name}: {folder} has no decision threshold.")
    vae = cfg.get("vae") or {}
    size = cfg.get("image_size", vae.get("image_size"))
    try:
        bundled = folder.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        bundled = None
    return Entry(name=name, method=cfg["method"], modality=cfg.get("modality", "image"), domain=domain,
                 class_id=class_id, threshold=float(thr), threshold_provenance=cfg.get("threshold_provenance") or "",
                 sha256=files["model.safetensors"], bundled=bundled, hub=hub, figures=figures or {},
                 input={"image_size": size, "mel": cfg.get("mel")}, training_data=training_data, licence=licence,
                 paper=PAPERS.get(cfg["method"], ""), files=files)


def _deviations(method: str) -> str:
    """The "Deviations" / "Choices" section of the method's README, for the model card."""
    path = METHOD_README / method / "README.md"
    if not path.is_file():
        return ""
    text = path.read_text()
    m = re.search(r"^## (Deviations[^\n]*|Choices the paper leaves open[^\n]*)\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return m.group(2).strip() if m else ""


def selection_section(config: dict[str, Any] | None) -> str:
    """How a model's settings were chosen: the rule and every candidate's validation figures."""
    sel = (config or {}).get("selection") or {}
    if not sel:
        return ("Trained before settings were selected on validation data; its settings are the method's "
                "defaults (see the method README).")
    vs = sel.get("validation_set", {})
    rows = "\n".join(
        f"| {'**' if i == sel['chosen'] else ''}{', '.join(f'{k} = {v}' for k, v in c['settings'].items())}"
        f"{'**' if i == sel['chosen'] else ''}{' (paper)' if c.get('paper') else ''} | "
        + " | ".join(f"{c['validation'].get(k, float('nan')):.3f}" for k in ("image_auroc", "pixel_auroc", "aupro"))
        + f" | {c['score']:.3f} |" for i, c in enumerate(sel["candidates"]))
    rerun = f" Run with `python -m decodemo select`: {sel['rerun']}." if sel.get("rerun") else ""
    return (f"Mode `{sel['mode']}`.{rerun} Rule: {sel['rule']}. Validation set: {vs.get('normal_inputs', '?')} normal "
            f"inputs and {vs.get('synthetic_anomalies', '?')} synthetic anomalies ({vs.get('source', '')}).\n\n"
            "| candidate | image AUROC | pixel AUROC | AUPRO | score |\n|---|---|---|---|---|\n" + rows)


def model_card(entry: Entry, config: dict[str, Any] | None = None) -> str:
    """A Hugging Face model card (README.md with YAML front matter) for ``entry``; ``config`` (the
    folder's ``config.json``) adds how its settings were chosen."""
    figs = "\n".join(f"| {k} | {v} |" if isinstance(v, int) or not isinstance(v, float) else f"| {k} | {v:.3f} |"
                     for k, v in entry.figures.items()) or "| (none recorded) | |"
    article = "An" if entry.method[:1] in "aeiou" else "A"
    lic = entry.licence.lower()
    hf_licence = ("cc-by-nc-sa-4.0" if "cc by-nc-sa 4.0" in lic else "cc-by-sa-4.0" if "cc by-sa 4.0" in lic
                  else "other")
    return f"""---
library_name: decodemo
license: {hf_licence}
tags:
- anomaly-detection
- diffusion
- {entry.method}
- {entry.modality}
---

# decodemo `{entry.name}`

{article} `{entry.method}` anomaly detector for **{entry.domain}** ({entry.modality}{', class ' + entry.class_id if entry.class_id else ''}),
trained with decodemo on normal data only. Load it with
`decodemo.methods.load_model(folder)`; the folder holds `config.json` and `model.safetensors`
(safetensors only, SHA-256 `{entry.sha256}`).

## Method
{entry.paper}

## Training data and licence
{entry.training_data or 'not recorded'}

Licence of the data, which the weights inherit: {entry.licence or 'not recorded'}.

## Decision threshold
{entry.threshold:.6g}: {entry.threshold_provenance}
{_calibration(entry)}

## Figures (test split of the training data's source)
| metric | value |
|---|---|
{figs}

## How the settings were chosen (validation without test data)
{selection_section(config)}

## Deviations from the paper
{_deviations(entry.method) or 'See the method README in decodemo.'}
"""


def _calibration(entry) -> str:
    """The threshold's false-positive guarantee on normal inputs, as the app shows it."""
    from decodemo.metrics.calibration import describe, guarantee_text

    scores = (entry.reference or {}).get("scores")
    if not scores:
        return ""
    c = describe(scores, entry.threshold, target=(entry.calibration or {}).get("target"))
    return f"\nOn normal inputs: {guarantee_text(c)}.\n"


def push(name: str, repo_id: str, *, manifest: str | Path = MANIFEST, root: str | Path = CHECKPOINTS,
         token: str | None = None, private: bool = False, api=None, record: bool = True) -> str:
    """Upload the model folder of ``name`` with a generated model card to ``repo_id`` on the Hub;
    return the commit sha and (``record``) pin it in the manifest as the entry's Hub source."""
    import shutil
    import tempfile

    from huggingface_hub import HfApi

    entries = load_manifest(manifest)
    if name not in entries:
        raise ModelError(f"Unknown model {name!r}; the registry has: {', '.join(entries)}.")
    entry = entries[name]
    folder, _ = resolve(entry, root=root)
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for f in sorted({"config.json", *entry.pinned()}):  # every verified file, nothing else
            (Path(tmp) / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / f, Path(tmp) / f)
        from decodemo.methods.base import read_config

        (Path(tmp) / "README.md").write_text(model_card(entry, read_config(folder)))
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp,
                                 commit_message=f"decodemo {name}: {entry.method} weights and model card")
    sha = getattr(info, "oid", None) or str(info)
    if record and _SHA1.match(sha):
        entry.hub = HubSource(repo_id, sha, None)
        save_manifest(entries, manifest)
    return sha
