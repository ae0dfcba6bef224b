import { ApiError } from './api.js';

/**
 * A file as a request's body, with upload progress: XMLHttpRequest, because fetch cannot report it.
 * The file streams from disk; the page never reads it whole. Refusals come back in the daemon's words.
 */
export function sendFile<T>(
  method: string,
  url: string,
  file: Blob,
  headers: Record<string, string>,
  onProgress: (percent: number) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(Math.floor((e.loaded / e.total) * 100));
    };
    xhr.onload = () => {
      const parsed = (xhr.responseText ? JSON.parse(xhr.responseText) : undefined) as
        (T & { error?: { message?: string } }) | undefined;
      if (xhr.status >= 200 && xhr.status < 300) resolve(parsed!);
      else reject(new ApiError(parsed?.error?.message ?? `phyllomed answered ${xhr.status}`, xhr.status));
    };
    xhr.onerror = () => reject(new Error('the upload was cut off: try again'));
    xhr.send(file);
  });
}
