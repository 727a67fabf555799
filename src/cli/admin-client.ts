/** Fetches JSON from a running instance's admin server, with an error that says what to check. */
export async function fetchAdminJson<T>(
  base: string,
  path: string,
  query: Record<string, string> = {},
): Promise<T> {
  const url = new URL(path, base);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  } catch (err) {
    throw new Error(
      `cannot reach rwsplit's admin server at ${base} (${(err as Error).message}); is it running? pass --http URL`,
    );
  }
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as T;
}
