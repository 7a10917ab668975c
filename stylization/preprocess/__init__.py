"""Preprocessing: from raw pictures and videos to what the data layer stores.

This package owns everything that looks at a user's (or a dataset's) raw pixels to produce
landmarks and 3DMM coefficients:

* :mod:`~stylization.preprocess.faces` — face detection and 68 landmarks (dlib or face_alignment);
* :mod:`~stylization.preprocess.deep3d` and :mod:`~stylization.preprocess.recon_net` — the
  Deep3DFaceRecon backend (alignment + coefficient regressor);
* :mod:`~stylization.preprocess.fitting` — a fit of the face model to landmarks (no Deep3D files needed);
* :mod:`~stylization.preprocess.pose` — a pose source (video or coefficient ``.npy``) -> pose rows,
  and the pose track that drives a rendered video.

Real data (``scripts/preprocess.py``; data/README.md):

* :mod:`~stylization.preprocess.sources` — which raw clips MEAD, HDTF or a folder holds; shards;
* :mod:`~stylization.preprocess.decode` — one clip's frames (25 fps, streamed) and audio segment;
* :mod:`~stylization.preprocess.tracking` — the face over a clip and its one crop square;
* :mod:`~stylization.preprocess.clip_fit` — coefficients of a whole clip in one batched fit;
* :mod:`~stylization.preprocess.aus` and :mod:`~stylization.preprocess.texts` — action units
  and the CLIP-ranked emotion texts;
* :mod:`~stylization.preprocess.runner` — the resumable, parallel driver and the index merge;
* :mod:`~stylization.preprocess.mat3dmm` — other projects' 3DMM ``.mat`` files in and out.

The pure crop geometry
(:mod:`stylization.data.alignment`) and the coefficient layout (:mod:`stylization.data.coeffs`)
stay in the data layer, below this package; models never import it (it sits in layer 4 beside
``stylization.loading``, which builds the Deep3D regressor from its official file).
"""
