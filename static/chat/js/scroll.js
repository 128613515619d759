// Follow the answer as it grows, until the user scrolls up; then stop following and offer a
// "jump to latest" button. Scrolling back to the bottom (or the button) resumes following.

const NEAR_BOTTOM_PX = 48;

export function createScrollFollower(scroller, jumpButton) {
  let following = true;
  let ownScrollTop = null; // where our last programmatic scroll put it

  function distanceFromBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
  }

  function scrollToBottom() {
    const top = scroller.scrollHeight - scroller.clientHeight;
    ownScrollTop = Math.max(0, top);
    scroller.scrollTop = top;
  }

  function setFollowing(value) {
    following = value;
    updateButton();
  }

  function updateButton() {
    jumpButton.hidden = following || distanceFromBottom() <= NEAR_BOTTOM_PX;
  }

  function stopFollowing() {
    if (scroller.scrollHeight > scroller.clientHeight) setFollowing(false);
  }

  function onScroll() {
    const ours = ownScrollTop !== null && Math.abs(scroller.scrollTop - ownScrollTop) < 2;
    ownScrollTop = null;
    if (ours) return;
    if (distanceFromBottom() <= NEAR_BOTTOM_PX) setFollowing(true);
    else setFollowing(false);
  }

  // Intent to read back: react before the first scroll event so the next frame doesn't pull down.
  function onWheel(event) {
    if (event.deltaY < 0) stopFollowing();
  }

  function onKeyDown(event) {
    if (["PageUp", "ArrowUp", "Home"].includes(event.key) && event.target === scroller) stopFollowing();
  }

  /** Call after the content changed: keep the bottom in view while following. */
  function contentChanged() {
    if (following) scrollToBottom();
    updateButton();
  }

  function jumpToLatest() {
    setFollowing(true);
    scrollToBottom();
    updateButton();
  }

  scroller.addEventListener("scroll", onScroll, { passive: true });
  scroller.addEventListener("wheel", onWheel, { passive: true });
  scroller.addEventListener("touchmove", () => stopFollowing(), { passive: true });
  scroller.addEventListener("keydown", onKeyDown);
  jumpButton.addEventListener("click", jumpToLatest);

  return {
    contentChanged,
    jumpToLatest,
    stopFollowing, // the page moved on purpose (a search result): stay there
    get following() {
      return following;
    },
  };
}
