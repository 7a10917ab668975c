"""The domain facts every layer shares, each written once (layer 0: imports nothing from the project).

The values are facts of the papers and the official releases (ARCHITECTURE.md, "Facts"), not
settings: a config never changes them. The modules that used to define them (``data.coeffs``,
``data.audio``, ``data.face_model``, ``data.parsing``) import them from here, and the names they
exported stay importable there.
"""

from __future__ import annotations

# ---- 3DMM coefficients (Deep3DFaceRecon: BFM 2009 + expression PCA; "the coefficient layer") ----
# Column ranges of one stored per-frame row; "crop" is the alignment step's (s, tx, ty), appended.
COEFF_SLICES: dict[str, slice] = {
    "id": slice(0, 80),  # identity shape coefficients
    "exp": slice(80, 144),  # expression coefficients
    "tex": slice(144, 224),  # albedo coefficients
    "angle": slice(224, 227),  # radians, (pitch x, yaw y, roll z)
    "gamma": slice(227, 254),  # spherical-harmonics lighting, 3 x 9
    "trans": slice(254, 257),  # BFM units, camera at z = 10
    "crop": slice(257, 260),  # (s, tx, ty) of the 224 alignment crop
}
RECON_DIM = 257  # coefficients per frame that Deep3DFaceRecon predicts
COEFF_DIM = 260  # RECON_DIM + the 3 crop parameters: the stored per-frame row
ID_DIM = 80  # identity coefficients (COEFF_SLICES["id"])
EXP_DIM = 64  # expression coefficients (COEFF_SLICES["exp"]); what Style-E generates per frame
SEMANTIC_PARTS = ("exp", "angle", "trans", "crop")  # the renderer's per-frame vector, in this order
SEMANTIC_DIM = 73  # 64 + 3 + 3 + 3: the renderer's per-frame "semantic" vector (PIRenderer / StyleHEAT)
WINDOW_RADIUS = 13  # frames either side of the centre in a renderer window, clamped at the clip ends
WINDOW_FRAMES = 2 * WINDOW_RADIUS + 1  # 27: frames in a renderer window (a 73 x 27 input)

# ---- time ("the coefficient layer": video at 25 fps, audio 16 kHz mono) ----
SAMPLE_RATE = 16000  # Hz, mono audio everywhere (SadTalker's mel is computed at this rate)
FPS = 25  # video frames per second of every corpus and output (MEAD's 30 fps is resampled)
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640 audio samples per video frame

# ---- crops ----
FACE_CROP_SIZE = 256  # px, side of the FOMM-style face crop (a corpus frame, a user's photo crop; M-LMD's frame)
RECON_CROP_SIZE = 224  # px, side of Deep3DFaceRecon's aligned crop, the frame its camera projects into

# ---- the 68 facial landmarks (iBUG 68-point order, 0-based; dlib, face_alignment and BFM keypoints) ----
N_LANDMARKS = 68  # points per face
JAW = tuple(range(0, 17))  # jaw line, from the subject's right temple under the chin to the left
RIGHT_BROW, LEFT_BROW = tuple(range(17, 22)), tuple(range(22, 27))  # the subject's right / left brow
BROWS = RIGHT_BROW + LEFT_BROW  # 17-26
NOSE_BRIDGE, NOSE_BASE = tuple(range(27, 31)), tuple(range(31, 36))  # bridge top to tip; base right to left
NOSE = NOSE_BRIDGE + NOSE_BASE  # 27-35
RIGHT_EYE, LEFT_EYE = tuple(range(36, 42)), tuple(range(42, 48))  # the subject's right / left eye, 6 points each
EYES = RIGHT_EYE + LEFT_EYE  # 36-47
OUTER_LIPS = tuple(range(48, 60))  # 48 right corner, 51 upper centre, 54 left corner, 57 lower centre
INNER_LIPS = tuple(range(60, 68))  # 60 right corner, 62 upper centre, 64 left corner, 66 lower centre
MOUTH = OUTER_LIPS + INNER_LIPS  # 48-67: the 20 points of M-LMD and of the mouth box
# How far the lips are apart: outer 51-57 and inner 62-66 (Style-E's official lip-opening loss).
LIP_OPENING_PAIRS = ((51, 57), (62, 66))
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper and lower inner-lip points facing each other

# ---- face parsing (BiSeNet, CelebAMask-HQ layout; "Facts: Style-A") ----
PARSING_CLASSES = 19  # parsing channels the content encoder reads beside RGB (22 input channels)

# ---- ImageNet statistics (torchvision; what the VGG-19 perceptual losses normalise with). BiSeNet was
# trained with them too, but VToonify feeds it 2·x instead, and so do we (style_a/bisenet.py) ----
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per RGB channel, of images in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)  # per RGB channel, of images in [0, 1]
