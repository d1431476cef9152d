"""The phantom packaged as the RSNA Pneumonia Detection Challenge distributes its data.

    write_phantom_rsna("src", n_normal=80, n_abnormal=40, size=128)
    python -m hqanogan_core convert rsna --src src --out data --size 32

writes src/stage_2_train_labels.csv (patientId, x, y, width, height, Target) and
src/stage_2_train_images/<patientId>.dcm (one 16-bit MONOCHROME2 frame each). Abnormal patients get
one of the phantom's findings; like RSNA's opacities, each becomes a "pneumonia" case whose boxes are
the bounding boxes of the finding's connected regions. Every third abnormal DICOM is MONOCHROME1
(inverted, as some RSNA scanners store them) so the converter's inversion is exercised.

It exists so the own-data path (convert -> HQANOGAN_DATA -> every chapter) runs end to end with no
download: the test suite and CI use it as the "real" dataset fixture.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy import ndimage

from .phantom import ANOMALY_TYPES, PhantomConfig, render_case

LABELS_CSV = "stage_2_train_labels.csv"
IMAGE_DIR = "stage_2_train_images"
HEADER = ("patientId", "x", "y", "width", "height", "Target")


def mask_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x, y, width, height) of each 8-connected region of a boolean mask [H, W]."""
    labelled, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    boxes = []
    for rows, cols in ndimage.find_objects(labelled):
        boxes.append((cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start))
    return boxes


def write_dicom(path: Path, pixels: np.ndarray, patient_id: str, monochrome1: bool = False) -> None:
    """One uncompressed 16-bit grayscale frame [H, W] (uint16) as a DICOM Part 10 file."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = patient_id, "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    stored = (4095 - pixels) if monochrome1 else pixels
    ds.PixelData = stored.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_phantom_rsna(dst, n_normal: int = 80, n_abnormal: int = 40, size: int = 128, seed: int = 0) -> dict:
    """Write an RSNA-format source folder from phantom patients; returns counts."""
    dst = Path(dst)
    if (dst / LABELS_CSV).exists():
        raise FileExistsError(f"{dst / LABELS_CSV} exists; choose an empty folder")
    config = PhantomConfig(size=size)
    rows = []
    for i in range(n_normal + n_abnormal):
        abnormal = i >= n_normal
        kind = ANOMALY_TYPES[(i - n_normal) % len(ANOMALY_TYPES)] if abnormal else None
        image, mask = render_case(seed, i, kind, config, split="test")
        pid = f"phantom-{seed}-{i:05d}"
        write_dicom(dst / IMAGE_DIR / f"{pid}.dcm", np.round(image * 4095).astype(np.uint16), pid,
                    monochrome1=abnormal and (i - n_normal) % 3 == 2)
        boxes = mask_boxes(mask) if abnormal else []
        if abnormal and boxes:
            rows += [(pid, x, y, w, h, 1) for x, y, w, h in boxes]
        else:                       # a normal patient, or a finding too faint to leave a region
            rows.append((pid, "", "", "", "", 0))
    with open(dst / LABELS_CSV, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    n_pneumonia = len({r[0] for r in rows if r[5] == 1})
    return {"patients": n_normal + n_abnormal, "pneumonia": n_pneumonia, "normal": n_normal + n_abnormal - n_pneumonia}
