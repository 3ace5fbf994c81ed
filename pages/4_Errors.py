"""Errors: evaluate a model on a labelled folder; where it goes wrong, and what it looked at."""

import tempfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from explain.cams import METHOD_LABELS
from explain.images import decode_image
from explain.metrics import roc_curve
from explain.overlay import COLORMAPS
from explain.report import Section, html_report, zip_of_pngs
from models.data import extract_labelled_zip, list_labelled
from models.evaluate import cached_evaluation
from ui.render import overlay_for, thumbnail
from ui.samples import SHARED_TEST
from ui.state import Photo, digest_of, explain, loaded_or_stop, model_picker, sidebar_models

st.set_page_config(page_title="Errors", page_icon="🧭", layout="wide")
st.title("Errors")
st.write(
    "Evaluate a model on labelled photos: its figures, and a gallery of right and wrong "
    "answers, most confident mistakes first, with the map at each stage's end."
)

entries = sidebar_models()
with st.sidebar:
    entry = model_picker("Model", entries, key="errors_model")
    method = st.selectbox("Method", list(METHOD_LABELS), format_func=METHOD_LABELS.get, key="errors_method")
    colormap = st.selectbox("Colormap", list(COLORMAPS), key="errors_colormap")
loaded = loaded_or_stop(entry)
explainer = loaded.explainer

sources = (["the shared test photos"] if SHARED_TEST.is_dir() else []) + [
    "a folder on this machine",
    "an uploaded zip",
]
source = st.radio("Photos", sources, horizontal=True, key="errors_source")
folder = None
if source == "the shared test photos":
    folder = SHARED_TEST
elif source == "a folder on this machine":
    typed = st.text_input("Folder of class subfolders (or cat.N.jpg files)", key="errors_folder").strip()
    folder = Path(typed) if typed else None
else:
    upload = st.file_uploader(
        "Zip of class folders (cats/…, dogs/…)", type=["zip"], key="errors_zip", max_upload_size=200
    )
    if upload is not None:
        data = upload.getvalue()
        target = Path(tempfile.gettempdir()) / "cvd-uploads" / digest_of(data)
        try:
            folder = target if target.is_dir() else extract_labelled_zip(data, target)
        except ValueError as err:
            st.error(f"{upload.name}: {err}")
if folder is None:
    st.info("Choose the photos to evaluate on.")
    st.stop()
try:
    files = list_labelled(folder, explainer.class_names)
except (ValueError, FileNotFoundError) as err:
    st.error(str(err))
    st.stop()
per_class = st.slider(
    "Photos per class (the first ones, in name order)", 10, 1000, 100, 10, key="errors_limit"
)
files = files.first_per_class(per_class)
tta = st.toggle(
    "Flip test-time augmentation",
    value=False,
    key="errors_tta",
    help="Average the model's probabilities on each photo and on its mirror image (one batched "
    "pass of twice the photos). Off: the model's own answer on the photo.",
)

bar = st.progress(0.0, text="Evaluating…")
result, probs, paths, labels = cached_evaluation(
    explainer,
    files,
    entry.path,
    loaded.name,
    progress=lambda done, total: bar.progress(done / total, text=f"Evaluating… {done}/{total}"),
    tta=tta,
)
bar.empty()
names = explainer.class_names
c1, c2, c3, c4 = st.columns(4)
c1.metric("Accuracy", f"{result.accuracy:.2%}")
c2.metric("Loss", f"{result.loss:.4f}")
c3.metric("ROC AUC", "–" if result.roc_auc is None else f"{result.roc_auc:.4f}")
c4.metric("Photos", result.n)
st.caption(
    "With flip test-time augmentation: each photo's probabilities are the mean over it and its mirror."
    if result.tta
    else "Without test-time augmentation: one pass over each photo as it is."
)
st.session_state.setdefault("degenerate", {})[loaded.name] = result.warning
if result.warning:
    st.warning(result.warning)
for message in result.unreadable[:5]:
    st.error(f"unreadable: {message}")

left, right = st.columns(2)
with left:
    confusion = np.asarray(result.confusion)
    figure = go.Figure(
        go.Heatmap(
            z=confusion,
            x=[f"said {n}" for n in names],
            y=[f"is {n}" for n in names],
            text=confusion,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
        )
    )
    figure.update_layout(title="Confusion matrix", height=360, yaxis={"autorange": "reversed"})
    st.plotly_chart(figure, width="stretch")
with right:
    if len(names) == 2 and len(labels):
        fpr, tpr = roc_curve(probs[:, 1], labels == 1)
        figure = go.Figure(go.Scatter(x=fpr, y=tpr, mode="lines", name="ROC"))
        figure.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": "grey"})
        figure.update_layout(
            title=f"ROC curve (AUC {result.roc_auc or float('nan'):.4f})",
            height=360,
            xaxis_title="false positive rate",
            yaxis_title="true positive rate",
        )
        st.plotly_chart(figure, width="stretch")

st.subheader("Gallery")
predicted = probs.argmax(axis=1)
confidence = probs[np.arange(len(probs)), predicted]
wrong = np.flatnonzero(predicted != labels)
right_ = np.flatnonzero(predicted == labels)
show = st.slider("Photos per list", 1, 12, 4, key="errors_show")
stages = explainer.layers.stage_ends()
pictures, report_sections = {}, []
for title, index in (
    ("Most confident mistakes", wrong[np.argsort(-confidence[wrong])][:show]),
    ("Most confident correct answers", right_[np.argsort(-confidence[right_])][:show]),
):
    st.markdown(f"**{title}** ({len(wrong) if 'mistakes' in title else len(right_)} in all)")
    if not len(index):
        st.caption("none")
    section = Section(title)
    for i in index:
        data = Path(paths[i]).read_bytes()
        photo = Photo(Path(paths[i]).name, digest_of(data), decode_image(data))
        maps = explain(loaded, photo, [s.path for s in stages], int(predicted[i]), (method,))
        small = thumbnail(photo.rgb, 256)
        row = st.columns([1] + [1] * len(stages) + [1])
        caption = f"{photo.name}: is {names[labels[i]]}, said {names[predicted[i]]} ({confidence[i]:.1%})"
        row[0].image(small, caption=caption, width="stretch")
        section.pictures.append((caption, small))
        for col, info in zip(row[1:], stages):
            picture, scaled = overlay_for(small, maps.cam(info.path, 0, method), 0.5, colormap)
            col.image(
                picture, caption=f"{info.name}{'' if scaled.ok else ' ⚠ ' + scaled.status}", width="stretch"
            )
            pictures[f"{photo.name}_{info.name}"] = picture
            section.pictures.append((f"{photo.name} · {info.name}", picture))
        if row[-1].button("Open in Inspect", key=f"errors_open_{i}"):
            st.session_state["inspect_open"] = paths[i]
            st.switch_page("pages/1_Inspect.py")
    report_sections.append(section)

if st.toggle("Prepare downloads (ZIP of the gallery, HTML report)", key="errors_exports"):
    summary = Section(
        "Figures",
        figures={
            "model": loaded.name,
            "photos": result.n,
            "flip test-time augmentation": "yes" if result.tta else "no",
            "accuracy": f"{result.accuracy:.4f}",
            "loss": f"{result.loss:.4f}",
            "ROC AUC": result.roc_auc,
            "confusion [true][said]": result.confusion,
            "warning": result.warning or "",
        },
    )
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download the gallery (PNGs in a ZIP)",
        zip_of_pngs(pictures),
        "errors.zip",
        "application/zip",
        key="errors_zip_download",
    )
    d2.download_button(
        "Download an HTML report",
        html_report(f"Errors of {loaded.name}", [summary, *report_sections], loaded.card.to_dict()),
        "errors.html",
        "text/html",
        key="errors_html_download",
    )
