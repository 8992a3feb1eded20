// The draw-a-number page: strokes on a white canvas, sent as PNG to POST /predict while you draw; the
// answer is the text read (every digit, left to right) or "no digit" and why.
"use strict";

const canvas = document.getElementById("canvas");
const context = canvas.getContext("2d");
const predictionView = document.getElementById("prediction");
const confidenceView = document.getElementById("confidence");
const digitsView = document.getElementById("digits");
const seenView = document.getElementById("seen");
const statusView = document.getElementById("status");

// A stroke about a twelfth of the box's height: drawn digits then look like MNIST's once scaled to 20×20.
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
  digitsView.replaceChildren();
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
  showEmpty("Draw a digit or a number in the box.");
});

for (const id of ["upload", "camera"]) {
  document.getElementById(id).addEventListener("change", async (event) => {
    const file = event.target.files[0];
    event.target.value = ""; // the same file can be chosen again
    if (!file) return;
    setStatus(`Reading ${file.name}…`);
    drawPreview(file);
    await predict(file, file.type || "application/octet-stream", file.name);
  });
}

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
  if (answer.input_png) seenView.src = `data:image/png;base64,${answer.input_png}`;
  else seenView.removeAttribute("src");
  if (!answer.text) {
    predictionView.textContent = "no digit";
    predictionView.dataset.state = "none";
    confidenceView.textContent = answer.note || "";
    digitsView.replaceChildren();
    setStatus(name === "drawing" ? "No digit read: keep drawing, or Clear." : `No digit in ${name}.`);
    return;
  }
  predictionView.textContent = answer.text;
  predictionView.dataset.state = "predicted";
  confidenceView.textContent = `${(answer.confidence * 100).toFixed(1)} %`;
  // One row per digit read, left to right, with its own confidence.
  const rows = answer.digits.map(({ text, confidence }) => {
    const row = document.createElement("li");
    const percent = (confidence * 100).toFixed(1);
    row.innerHTML = `<strong>${text}</strong><div class="bar"><span style="width:${percent}%"></span></div><span class="value">${percent} %</span>`;
    return row;
  });
  digitsView.replaceChildren(...rows);
  setStatus(name === "drawing" ? "Keep drawing, or Clear to start again." : `Read from ${name}.`);
}

clearCanvas();
