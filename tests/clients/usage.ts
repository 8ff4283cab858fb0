// What a TypeScript program does with the types openapi-typescript generates from /api/schema/,
// through openapi-fetch. tests/test_clients.py type-checks it with tsc against freshly generated
// types, so a schema change that breaks such a program fails the suite. The `@ts-expect-error`
// lines prove the types are precise: each is an error today; were a type to decay to `any`,
// tsc would report the unused directive.
import createClient from "openapi-fetch";
import type { components, paths } from "search-image-api";

type Hit = components["schemas"]["SearchHit"];
type Image = components["schemas"]["Image"];
type ApiError = components["schemas"]["Error"];

// openapi-typescript types binary fields as strings: the serializer swaps in the real file.
function multipart(fields: Record<string, string | number | string[] | undefined>, file?: Blob): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || name === "file") continue;
    for (const item of Array.isArray(value) ? value : [value]) form.append(name, String(item));
  }
  if (file) form.append("file", file, "photo.jpg");
  return form;
}

export function describe(hit: Hit): string {
  const image: Image = hit.image;
  return `${hit.rank}. ${image.title || image.id} (${hit.score === null ? "pinned" : hit.score.toFixed(3)}) ${image.thumbnail_url}`;
}

export async function journey(baseUrl: string, username: string, password: string, photo: Blob): Promise<string[]> {
  const anonymous = createClient<paths>({ baseUrl });
  const token = await anonymous.POST("/api/v1/auth/token/", { body: { username, password } });
  if (!token.data) throw new Error(JSON.stringify(token.error));
  const api = createClient<paths>({ baseUrl, headers: { Authorization: `Token ${token.data.token}` } });

  const uploaded = await api.POST("/api/v1/images/", {
    body: { file: "", title: "Red shoes" },
    bodySerializer: (body) => multipart(body, photo),
  });
  if (!uploaded.data) throw new Error(JSON.stringify(uploaded.error));
  const created: boolean = uploaded.data.created;
  const id: number = uploaded.data.id;

  const lines: string[] = [`uploaded ${id}, new: ${created}`];
  const page = await api.GET("/api/v1/images/", {
    params: { query: { page_size: 32, status: "indexed", uploaded_after: "2026-01-01T00:00:00Z" } },
  });
  if (page.data) lines.push(`${page.data.results.length} images, next: ${page.data.next ?? "none"}`);
  const cursor: string | null = page.data?.next ? new URL(page.data.next).searchParams.get("cursor") : null;
  if (cursor) await api.GET("/api/v1/images/", { params: { query: { cursor } } });

  const text = await api.GET("/api/v1/search/", { params: { query: { q: "red running shoes", page_size: 5 } } });
  if (text.error) {
    const problem: ApiError | Record<string, unknown> = text.error;
    lines.push(`search failed: ${JSON.stringify(problem)}`);
  } else {
    lines.push(...text.data.results.map(describe));
  }
  const byImage = await api.POST("/api/v1/search/image/", {
    body: { file: "" },
    bodySerializer: () => multipart({}, photo),
  });
  const combined = await api.POST("/api/v1/search/combined/", {
    body: { text: "a salad", image_weight: 0.5, negative_text: "tomatoes" },
    bodySerializer: (body) => multipart(body ?? {}, photo),
  });
  const similar = await api.GET("/api/v1/images/{id}/similar/", { params: { path: { id: String(id) } } });
  for (const result of [byImage, combined, similar]) {
    if (result.data) lines.push(...result.data.results.map(describe));
  }

  const edited = await api.PATCH("/api/v1/images/{id}/", { params: { path: { id: String(id) } }, body: { title: "Trainers" } });
  if (edited.data) lines.push(`renamed to ${edited.data.title}`);
  const hidden = await api.POST("/api/v1/images/{id}/hide/", { params: { path: { id: String(id) } } });
  if (hidden.data) lines.push(`hidden: ${hidden.data.hidden}`);
  await api.POST("/api/v1/images/{id}/unhide/", { params: { path: { id: String(id) } } });
  const deleted = await api.DELETE("/api/v1/images/{id}/", { params: { path: { id: String(id) } } });
  if (deleted.response.status === 404 && deleted.error) lines.push(`gone already: ${deleted.error.detail}`);

  const index = await anonymous.GET("/api/v1/index/");
  if (index.data) lines.push(`index ${index.data.version ?? "none"}: ${index.data.searchable} searchable`);
  return lines;
}

export async function mistakes(baseUrl: string): Promise<void> {
  const api = createClient<paths>({ baseUrl });
  // @ts-expect-error: no such path
  await api.GET("/api/v1/photos/");
  // @ts-expect-error: a token needs the password too
  await api.POST("/api/v1/auth/token/", { body: { username: "alice" } });
  // @ts-expect-error: the query is text
  await api.GET("/api/v1/search/", { params: { query: { q: 42 } } });
  // @ts-expect-error: a text search needs `q`
  await api.GET("/api/v1/search/", { params: { query: { page: 2 } } });
  // @ts-expect-error: the image list pages by cursor, not by page number
  await api.GET("/api/v1/images/", { params: { query: { page: 2 } } });
  // @ts-expect-error: `status` is one of pending, indexed, failed
  await api.GET("/api/v1/images/", { params: { query: { status: "done" } } });
  const text = await api.GET("/api/v1/search/", { params: { query: { q: "cat" } } });
  // @ts-expect-error: a hit has `score`, not `distance`
  text.data?.results[0]?.distance;
  // @ts-expect-error: images are read-only in answers
  if (text.data?.results[0]) text.data.results[0].image.title = "renamed";
}
