// The draw-a-digit page: strokes on a white canvas, sent as PNG to POST /predict while you draw.
"use strict";

const canvas = document.getElementById("canvas");
const context = canvas.getContext("2d");
const predictionView = document.getElementById("prediction");
const confidenceView = document.getElementById("confidence");
const topView = document.getElementById("top3");
const seenView = document.getElementById("seen");
const statusView = document.getElementById("status");

// A stroke about a twelfth of the box wide: drawn digits then look like MNIST's once scaled to 20×20.
const STROKE = 22;

let drawing = false;
let last = null;
let inked = false; // something is on the canvas
let inFlight = false; // one request at a time; the newest drawing is sent when it returns
let dirty = false;

function clearCanvas() {
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  inked = false;
}

function showEmpty(message) {
  predictionView.textContent = "–";
  predictionView.dataset.state = "empty";
  confidenceView.innerHTML = "&nbsp;";
  topView.replaceChildren();
  seenView.removeAttribute("src");
  setStatus(message);
}

function setStatus(message, isError = false) {
  statusView.textContent = message;
  statusView.classList.toggle("error", isError);
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) / box.width) * canvas.width,
    y: ((event.clientY - box.top) / box.height) * canvas.height,
  };
}

function strokeTo(next) {
  context.strokeStyle = "#000";
  context.lineWidth = STROKE;
  context.lineCap = "round";
  context.lineJoin = "round";
  context.beginPath();
  context.moveTo(last.x, last.y);
  context.lineTo(next.x, next.y);
  context.stroke();
  last = next;
  inked = true;
}

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  drawing = true;
  last = point(event);
  strokeTo({ x: last.x + 0.01, y: last.y }); // a tap leaves a dot
  requestPrediction();
});

canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  // Coalesced events: the pen and finger positions between two animation frames, for smooth strokes.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) strokeTo(point(each));
  requestPrediction();
});

for (const type of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    requestPrediction();
  });
}

// Bumped by Clear: an answer to a request sent before it is dropped, not shown over the empty page.
let generation = 0;

document.getElementById("clear").addEventListener("click", () => {
  generation += 1;
  clearCanvas();
  dirty = false;
  showEmpty("Draw a digit from 0 to 9 in the box.");
});

document.getElementById("upload").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  event.target.value = ""; // the same file can be chosen again
  if (!file) return;
  setStatus(`Reading ${file.name}…`);
  drawPreview(file);
  await predict(file, file.type || "application/octet-stream", file.name);
});

function drawPreview(file) {
  // Shows the photo in the box; the server reads the file itself, not this preview.
  const url = URL.createObjectURL(file);
  const image = new Image();
  image.onload = () => {
    clearCanvas();
    const scale = Math.min(canvas.width / image.width, canvas.height / image.height);
    const width = image.width * scale;
    const height = image.height * scale;
    context.drawImage(image, (canvas.width - width) / 2, (canvas.height - height) / 2, width, height);
    URL.revokeObjectURL(url);
  };
  image.onerror = () => URL.revokeObjectURL(url);
  image.src = url;
}

function requestPrediction() {
  if (!inked) return;
  if (inFlight) {
    dirty = true;
    return;
  }
  dirty = false;
  canvas.toBlob((blob) => predict(blob, "image/png", "drawing"), "image/png");
}

async function predict(body, contentType, name) {
  inFlight = true;
  const sentIn = generation;
  try {
    const response = await fetch("/predict?return_input=true", {
      method: "POST",
      headers: { "Content-Type": contentType },
      body,
    });
    const answer = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
    if (sentIn !== generation) return; // cleared while it was on its way (finally still runs)
    if (!response.ok) {
      showEmpty(answer.detail || `HTTP ${response.status}`);
      setStatus(answer.detail || `HTTP ${response.status}`, true);
    } else {
      show(answer, name);
    }
  } catch (error) {
    setStatus(`No answer from the server (${error.message}).`, true);
  } finally {
    inFlight = false;
    if (dirty && inked) requestPrediction();
  }
}

function show(answer, name) {
  predictionView.textContent = String(answer.class);
  predictionView.dataset.state = "predicted";
  confidenceView.textContent = `${(answer.confidence * 100).toFixed(1)} %`;
  const rows = answer.top3.map(({ class: label, probability }) => {
    const row = document.createElement("li");
    const percent = (probability * 100).toFixed(1);
    row.innerHTML = `<strong>${label}</strong><div class="bar"><span style="width:${percent}%"></span></div><span class="value">${percent} %</span>`;
    return row;
  });
  topView.replaceChildren(...rows);
  if (answer.input_png) seenView.src = `data:image/png;base64,${answer.input_png}`;
  setStatus(name === "drawing" ? "Keep drawing, or Clear to start again." : `Prediction for ${name}.`);
}

clearCanvas();
