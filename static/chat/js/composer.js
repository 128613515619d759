// The message box: Enter sends, Shift+Enter adds a line, grows with its text, and refuses a
// second submit while one is in flight. Arrow-up in the empty box asks onEditLast() to edit the
// last message sent (it returns false when there is none to edit: the key then does what it
// always does). onInput(value) on each edit by the user and onBlur() when it loses focus (the
// page's "typing" notices). Esc (stop) is the page's, in app.js: it works wherever focus is.

export function createComposer({
  form,
  textarea,
  sendButton,
  stopButton,
  counter,
  maxChars,
  onSend,
  onStop,
  onEditLast = () => false,
  onInput = () => {},
  onBlur = () => {},
}) {
  let busy = false; // a message is being sent or answered

  function canSend() {
    const value = textarea.value;
    return !busy && value.trim().length > 0 && value.length <= maxChars;
  }

  function refresh() {
    sendButton.disabled = !canSend();
    const length = textarea.value.length;
    if (length > maxChars * 0.8) {
      counter.textContent = `· ${length.toLocaleString()} / ${maxChars.toLocaleString()}`;
      counter.classList.toggle("over", length > maxChars);
    } else {
      counter.textContent = "";
    }
  }

  function autosize() {
    textarea.style.height = "auto";
    textarea.style.height = `${Math.min(textarea.scrollHeight, window.innerHeight * 0.4)}px`;
  }

  function submit() {
    if (!canSend()) return;
    const content = textarea.value;
    busy = true; // set before anything async: a second Enter or click is ignored
    refresh();
    onSend(content);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  textarea.addEventListener("keydown", (event) => {
    if (event.isComposing || event.keyCode === 229) return; // the key belongs to an input method
    const plain = !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey;
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      submit();
    } else if (event.key === "ArrowUp" && plain && textarea.value === "" && onEditLast()) {
      event.preventDefault();
    }
  });
  textarea.addEventListener("input", () => {
    autosize();
    refresh();
    onInput(textarea.value);
  });
  textarea.addEventListener("blur", () => onBlur());
  stopButton.addEventListener("click", () => onStop());

  return {
    /** busy: sending or streaming; streaming: show Stop. */
    setState({ busy: isBusy, streaming }) {
      busy = isBusy;
      stopButton.hidden = !streaming;
      refresh();
    },
    clear() {
      textarea.value = "";
      autosize();
      refresh();
    },
    /** Put a message that was not sent back; text typed meanwhile stays after it. */
    restore(content) {
      const typed = textarea.value;
      if (!typed) textarea.value = content;
      else if (typed !== content && !typed.startsWith(content)) textarea.value = `${content}\n${typed}`;
      autosize();
      refresh();
    },
    focus() {
      textarea.focus();
    },
    enable() {
      textarea.disabled = false;
      refresh();
      textarea.focus();
    },
  };
}
