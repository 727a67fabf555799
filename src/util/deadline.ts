/**
 * Runs `work` with a deadline it can race its steps against: `deadline` rejects after `ms`
 * with "no answer within N ms". The timer is cleared when `work` settles.
 */
export async function withDeadline<T>(
  ms: number,
  work: (deadline: Promise<never>) => Promise<T>,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  deadline.catch(() => undefined); // a step that lost the race must not leave an unhandled rejection
  try {
    return await work(deadline);
  } finally {
    clearTimeout(timer);
  }
}
