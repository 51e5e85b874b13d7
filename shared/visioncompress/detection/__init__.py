"""Object detection: COCO data, torchvision detectors, mAP, and the detection algorithms.

The torchvision family lives in this package; the OpenMMLab family in ``detection.mm``.
"""
