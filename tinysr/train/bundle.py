"""Turn a finished training run into bundled package weights plus their recipe.

``python -m tinysr.train.bundle RUN_DIR NAME [--checkpoint last.pt] [--eval DIR ...]`` writes
``tinysr/weights/NAME.pt`` (model only, no optimizer state) and ``NAME.json``: the training
config, data, steps, seed, the run's validation history and final metrics measured with
``tinysr.evaluate`` on the given benchmark folders.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from ..checkpoint import bundled_weights_path, model_from_checkpoint, read_checkpoint, save_checkpoint
from ..provenance import file_sha256
from ..evaluate import evaluate, mean_row
from ..imageio import atomic_write
from ..runtimes import TorchRunner


def bundle(run_dir: str | Path, name: str, checkpoint: str = "last.pt", eval_dirs: list[str] = (),
           reproduce: str | None = None) -> dict:
    """``reproduce``: the command that trains it (default ``tinysr train tinysr/configs/NAME.yaml``).
    The bundled weights are the network's deployed form (a collapsible network collapsed)."""
    from ..models.mobile import deploy

    run_dir = Path(run_dir)
    ckpt = read_checkpoint(run_dir / checkpoint)
    model = deploy(model_from_checkpoint(ckpt, str(run_dir / checkpoint))).eval()
    cfg = ckpt.get("train_config") or ckpt["meta"].get("train_config")
    gan = bool(cfg.get("gan"))
    history = [{"step": int(r["step"]), "val_psnr": float(r["val_psnr"]),
                **({"val_lpips": float(r["val_lpips"]) if r["val_lpips"] else None,
                    "val_lpips_alex": float(r["val_lpips_alex"]) if r["val_lpips_alex"] else None} if gan else {})}
               for r in csv.DictReader(open(run_dir / "log.csv")) if r["val_psnr"]]
    metrics = {}
    for d in eval_dirs:  # a perceptual model is judged by LPIPS: both nets, required then
        rows = evaluate(TorchRunner(model), d, lpips=True if gan else None, progress=False,
                        lpips_net="both" if gan else "vgg")
        m = mean_row(rows)
        metrics[Path(d).name] = {"psnr_y": round(m.psnr, 4), "ssim_y": round(m.ssim, 4),
                                 "lpips": None if m.lpips is None else round(m.lpips, 4),
                                 **({"lpips_alex": round(m.lpips_alex, 4)} if m.lpips_alex is not None else {})}
    qat = ckpt.get("qat")
    if qat:  # a quantization-aware run: what counts is its int8 export, with the learnt ranges
        for d in eval_dirs:
            metrics[Path(d).name]["int8_psnr_y"] = round(_int8_psnr(run_dir / checkpoint, d), 4)
    dest = bundled_weights_path(f"{name}.pt")
    save_checkpoint(dest, model, meta={"name": name, "step": ckpt["meta"]["step"], "metrics": metrics},
                    **({"qat": qat} if qat else {}))
    recipe = {"name": name, "weights": dest.name, "sha256": file_sha256(dest), "checkpoint_used": checkpoint,
              "step": ckpt["meta"]["step"], "train_config": cfg, "validation_history": history,
              "final_metrics": metrics,
              **({"gan_recipe_source": cfg["gan"]["source"],
                  "selected_by": f"lowest validation LPIPS-{ckpt['meta'].get('lpips_net', 'alex')} on held-out "
                                 "training images" if checkpoint == "best.pt" else None} if gan else {}),
              **({"qat": "quantization-aware training: the checkpoint holds the learnt int8 ranges, which "
                         "tinysr export --precision int8 writes into the graph (int8_psnr_y: that export's score)"}
                 if qat else {}),
              "evaluation": "tinysr eval convention: Y (BT.601 studio), shave = scale, 8-bit outputs",
              "reproduce": reproduce or f"tinysr train tinysr/configs/{name}.yaml"}
    atomic_write(dest.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(recipe, indent=2) + "\n"))
    return recipe


def _int8_psnr(checkpoint: Path, data: str) -> float:
    """Y-PSNR on ``data`` of the TFLite int8 export of ``checkpoint`` (its learnt ranges when it has them)."""
    import tempfile

    from ..export.pipeline import ExportOptions, export_model
    from ..runtimes import LiteRTRunner

    with tempfile.TemporaryDirectory(prefix="tinysr-bundle-") as d:
        art = Path(d) / "model.tflite"
        export_model(str(checkpoint), art, ExportOptions(target="tflite", precision="int8", max_loss_db=99.0),
                     progress=False)
        return mean_row(evaluate(LiteRTRunner(art), data, lpips=False, progress=False)).psnr


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("name")
    p.add_argument("--checkpoint", default="last.pt")
    p.add_argument("--eval", nargs="*", default=[])
    p.add_argument("--reproduce", help="the command that trains it (default: tinysr train tinysr/configs/NAME.yaml)")
    a = p.parse_args(argv)
    r = bundle(a.run_dir, a.name, a.checkpoint, a.eval, a.reproduce)
    print(json.dumps(r["final_metrics"], indent=2))


if __name__ == "__main__":
    main()
